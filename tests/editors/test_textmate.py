"""The VS Code extension's TextMate grammar (editors/vscode/syntaxes/evt.tmLanguage.json),
tokenized in Node as VS Code tokenizes it (vscode-textmate + vscode-oniguruma, installed in
tests/editors by `npm ci --prefix tests/editors`).

- The grammar is generated from the one keyword list; the checked-in file is up to date.
- Every file in examples/ tokenizes, and no keyword in it is left without a keyword scope.
- Two examples have golden token files in tests/editors/golden; to rewrite them after a
  deliberate change of the grammar, run

      EVT_UPDATE_GOLDEN=1 python -m pytest tests/editors -k regenerate

  and review the diff.

Without `node` or without tests/editors/node_modules the Node tests are skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lang.syntax.keywords import CONSTANTS, KEYWORDS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "evt.tmLanguage.json"
GOLDEN = HERE / "golden"
GOLDEN_EXAMPLES = ("echo_pair.evt", "tests/json_api_test.evt")
UPDATE = os.environ.get("EVT_UPDATE_GOLDEN") == "1"
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.evt"))
NODE = shutil.which("node")
INSTALL = "npm ci --prefix tests/editors"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("evt_tm_generate", VSCODE / "syntaxes" /
                                                  "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need_node() -> str:
    if NODE is None:
        pytest.skip("SKIPPED LOUDLY: `node` is not on PATH, so the TextMate grammar cannot "
                    "be tokenized as VS Code does; install Node.js to run this test")
    if not (HERE / "node_modules" / "vscode-textmate").is_dir() or \
            not (HERE / "node_modules" / "vscode-oniguruma").is_dir():
        pytest.skip(f"SKIPPED LOUDLY: tests/editors/node_modules is missing; run `{INSTALL}` "
                    "to install vscode-textmate and vscode-oniguruma")
    return NODE


def _node(script: str, *args: str, stdin: str = "") -> Any:
    proc = subprocess.run([_need_node(), str(HERE / script), *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=HERE)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


_TOKENS: dict[str, list] = {}


def tokens() -> dict[str, list]:
    """Every example tokenized (once per test run)."""
    if not _TOKENS:
        out = _node("tokenize.js", stdin=json.dumps(
            {"grammar": str(GRAMMAR), "files": [str(p) for p in EXAMPLES]}))
        _TOKENS.update({str(Path(k).relative_to(ROOT / "examples")): v for k, v in out.items()})
    return _TOKENS


# ---------------------------------------------------------------- one keyword list


def _keyword_words(grammar: dict) -> set[str]:
    words: set[str] = set()
    for pattern in grammar["repository"]["keyword"]["patterns"]:
        m = re.fullmatch(r"\\b\(\?:([a-z_|]+)\)\\b", pattern["match"])
        if m:
            words.update(m.group(1).split("|"))
    return words


def test_the_grammar_file_is_generated_from_the_keyword_list() -> None:
    assert GRAMMAR.read_text(encoding="utf-8") == _generator().render(), (
        "editors/vscode/syntaxes/evt.tmLanguage.json is out of date: run "
        "`python editors/vscode/syntaxes/generate.py`")


def test_the_grammar_lists_exactly_the_keywords() -> None:
    grammar = json.loads(GRAMMAR.read_text(encoding="utf-8"))
    assert _keyword_words(grammar) == set(KEYWORDS)
    constant = grammar["repository"]["constant"]["match"]
    assert set(re.fullmatch(r"\\b\(\?:([a-z|]+)\)\\b", constant).group(1).split("|")) == \
        set(CONSTANTS)


def test_the_language_configuration_and_package_agree() -> None:
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    config = json.loads((VSCODE / "language-configuration.json").read_text(encoding="utf-8"))
    [language] = package["contributes"]["languages"]
    [grammar] = package["contributes"]["grammars"]
    assert language["extensions"] == [".evt"]
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"] == "source.evt"
    assert (VSCODE / grammar["path"]).resolve() == GRAMMAR
    assert config["comments"] == {"lineComment": "#"}
    assert "vscode-languageclient" in package["dependencies"]
    assert package["contributes"]["configuration"]["properties"]["evt.path"]["default"] == "evt"


# ---------------------------------------------------------------- tokenized in Node

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORD_SCOPES = ("keyword.", "storage.type.", "constant.language.")


def _code(scopes: list[str]) -> bool:
    """Whether a token is code (not inside a string or comment, or inside a `${ }`)."""
    for scope in reversed(scopes):
        if scope.startswith("meta.interpolation"):
            return True
        if scope.startswith(("string.", "comment.")):
            return False
    return True


def unscoped_keywords(toks: list) -> list[str]:
    """The keywords (as the words of a token) that got no keyword scope. A keyword used as
    a field (`m.text`) or a map key (`{from: 1}`) is a name there and is not counted."""
    words = set(KEYWORDS) | set(CONSTANTS)
    bad = []
    for i, (line, start, _end, text, scopes) in enumerate(toks):
        if not _code(scopes):
            continue
        for m in _WORD.finditer(text):
            if m.group() not in words:
                continue
            prev = toks[i - 1][3] if i and toks[i - 1][0] == line and m.start() == 0 else \
                text[: m.start()]
            after = text[m.end():] or (toks[i + 1][3] if i + 1 < len(toks) and
                                       toks[i + 1][0] == line else "")
            if prev.rstrip().endswith(".") or after.lstrip().startswith(":"):
                continue
            if not any(s.startswith(_KEYWORD_SCOPES) for s in scopes):
                bad.append(f"{line}:{start + m.start() + 1} {m.group()!r} has {scopes}")
    return bad


@pytest.mark.parametrize("name", [str(p.relative_to(ROOT / "examples")) for p in EXAMPLES])
def test_every_example_tokenizes_with_every_keyword_scoped(name: str) -> None:
    toks = tokens()[name]
    assert toks, name
    assert unscoped_keywords(toks) == []
    assert not [t for t in toks if any("invalid" in s for s in t[4])]


def test_the_keyword_check_can_fail() -> None:
    toks = [[1, 0, 4, "send", ["source.evt"]], [1, 4, 5, ".", ["source.evt"]],
            [1, 5, 9, "text", ["source.evt", "variable.other.property.evt"]],
            [2, 0, 4, "from", ["source.evt", "variable.other.key.evt"]],
            [2, 4, 5, ":", ["source.evt"]],
            [3, 0, 8, '"if x"', ["source.evt", "string.quoted.double.evt"]]]
    assert unscoped_keywords(toks) == ["1:1 'send' has ['source.evt']"]


def render_tokens(toks: list) -> str:
    """A golden token file: one line per token that is not only whitespace."""
    out = []
    for line, start, end, text, scopes in toks:
        if not text.strip():
            continue
        shown = " ".join(s for s in scopes if s != "source.evt") or "-"
        out.append(f"{line}:{start}-{end} {json.dumps(text, ensure_ascii=False)} {shown}\n")
    return "".join(out)


def _golden(name: str) -> Path:
    return GOLDEN / (name.replace("/", "__").removesuffix(".evt") + ".tokens")


@pytest.mark.parametrize("name", GOLDEN_EXAMPLES)
def test_golden_tokens(name: str) -> None:
    expected = _golden(name).read_text(encoding="utf-8")
    assert render_tokens(tokens()[name]) == expected


@pytest.mark.skipif(not UPDATE, reason="set EVT_UPDATE_GOLDEN=1 to rewrite the .tokens files")
def test_regenerate_golden_tokens() -> None:
    for name in GOLDEN_EXAMPLES:
        _golden(name).write_text(render_tokens(tokens()[name]), encoding="utf-8")


SNIPPET = """\
let a = 250ms + 1.5s + 2m + 1h + 3
let b = 64KiB + 1MiB + 2GiB + 10B + 0x1F + 1e3
let c = b"\\x01ok" + "hi ${name + 'x'} \\n ${ {k: 1}.k }"
on websocket receive api json as m from p { print m.text, {from: 1} }
connection api { url = "ws://h/"; reconnect = true }
"""


def _scopes_at(toks: list, line: int, col: int) -> list[str]:
    """The scopes of the token covering (line, col), both from 1."""
    for tline, start, end, _text, scopes in toks:
        if tline == line and start < col <= end:
            return scopes
    raise AssertionError(f"no token at {line}:{col}")


def test_each_construct_gets_its_scope(tmp_path: Path) -> None:
    path = tmp_path / "snippet.evt"
    path.write_text(SNIPPET, encoding="utf-8")
    toks = _node("tokenize.js", stdin=json.dumps({"grammar": str(GRAMMAR),
                                                  "files": [str(path)]}))[str(path)]
    lines = SNIPPET.splitlines()

    def scopes(line: int, needle: str, offset: int = 0) -> list[str]:
        return _scopes_at(toks, line, lines[line - 1].index(needle) + offset + 1)

    for needle in ("250ms", "1.5s", "2m", "1h"):
        assert "constant.numeric.duration.evt" in scopes(1, needle), needle
        assert "keyword.other.unit.duration.evt" in scopes(1, needle, len(needle) - 1)
    assert "constant.numeric.evt" in scopes(1, "3")
    for needle in ("64KiB", "1MiB", "2GiB", "10B"):
        assert "constant.numeric.size.evt" in scopes(2, needle), needle
    assert "constant.numeric.hex.evt" in scopes(2, "0x1F")
    assert "constant.numeric.evt" in scopes(2, "1e3")
    assert "string.quoted.double.bytes.evt" in scopes(3, 'b"')
    assert "constant.character.escape.evt" in scopes(3, "\\x01")
    assert "meta.interpolation.evt" in scopes(3, "name")
    assert "string.quoted.single.evt" in scopes(3, "'x'")  # a string inside ${ }
    assert "constant.character.escape.evt" in scopes(3, "\\n")
    assert "meta.interpolation.evt" in scopes(3, ".k", 1)  # a map's } does not end ${
    assert "string.quoted.double.evt" not in scopes(4, "on")
    assert "keyword.other.event.kind.evt" in scopes(4, "receive")
    assert "entity.name.type.endpoint.evt" in scopes(4, "api")
    assert "variable.other.property.evt" in scopes(4, "text")
    assert "variable.other.key.evt" in scopes(4, "from:")
    assert "variable.other.key.config.evt" in scopes(5, "reconnect")
    assert "constant.language.evt" in scopes(5, "true")
    assert "comment.line.number-sign.evt" in _node(
        "tokenize.js", stdin=json.dumps({"grammar": str(GRAMMAR), "files": [str(
            _write(tmp_path, "c.evt", "# a comment\n"))]}))[str(tmp_path / "c.evt")][0][4]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


# ---------------------------------------------------------------- the client


def test_the_extension_starts_evt_lsp_with_evt_path() -> None:
    if NODE is None:
        pytest.skip("SKIPPED LOUDLY: `node` is not on PATH; install Node.js to run this test")
    for path, command in ((".venv/bin/evt", ".venv/bin/evt"), ("", "evt")):
        proc = subprocess.run([NODE, str(HERE / "extension_check.js"),
                               str(VSCODE / "extension.js"), path],
                              capture_output=True, text=True, timeout=120, cwd=HERE)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        [made] = out["made"]
        assert made["started"] is True
        assert made["serverOptions"]["run"]["command"] == command
        assert made["serverOptions"]["run"]["args"] == ["lsp"]
        assert {"scheme": "file", "language": "evt"} in made["clientOptions"]["documentSelector"]
        assert made["clientOptions"]["synchronize"]["fileEvents"]["glob"] == "**/*.evt"
        assert out["subscriptions"] == 1
