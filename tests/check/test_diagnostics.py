"""The exact text of syntax and check errors, as `evt check` prints them.

Each tests/golden/diagnostics/NAME.evt is checked with `python -m lang check NAME.evt`, run
in that directory so file names stay short; stdout + stderr must equal NAME.err byte for
byte, and the exit code is 3 (0 for clean.evt). `syntax_*` files hold one syntax error each,
`check_*` files one or more check errors; lib/ holds files the cases import.

To rewrite the .err files after a deliberate change of wording, run

    EVT_UPDATE_GOLDEN=1 python -m pytest tests/check/test_diagnostics.py -k regenerate

and review the diff. Files listed in XFAIL_GOLDEN hold hand-written expectations for known
bugs; they are never rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import run_cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "diagnostics"
CASES = sorted(p.name for p in GOLDEN.glob("*.evt"))
UPDATE = os.environ.get("EVT_UPDATE_GOLDEN") == "1"
CLEAN = {"clean.evt"}
FORBIDDEN = ("Token(", "$END", "RBRACE", "LBRACE", "_NL", "Traceback")

_LALR = ("BUG: the expected words come from an LALR state whose lookaheads merge every "
         "context, not from what can really follow here; ")

# golden files whose .err says what `evt check` SHOULD print, for a known bug
XFAIL_GOLDEN: dict[str, str] = {}


def _params() -> list:
    out = []
    for name in CASES:
        marks = ([pytest.mark.xfail(strict=True, reason=XFAIL_GOLDEN[name])]
                 if name in XFAIL_GOLDEN else [])
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def _expected(name: str) -> str:
    return (GOLDEN / name).with_suffix(".err").read_text(encoding="utf-8")


def test_golden_set_is_there() -> None:
    syntax = [n for n in CASES if n.startswith("syntax_")]
    check = [n for n in CASES if n.startswith("check_")]
    assert len(syntax) >= 20 and len(check) >= 20
    assert set(CASES) == set(syntax) | set(check) | CLEAN
    for name in CASES:
        assert (GOLDEN / name).with_suffix(".err").exists(), f"{name} has no .err file"
    assert set(XFAIL_GOLDEN) <= set(CASES)


@pytest.mark.parametrize("name", _params())
def test_golden_diagnostic(name: str) -> None:
    result = run_cli(["check", name], cwd=GOLDEN)
    assert result.out + result.err == _expected(name)
    assert result.code == (0 if name in CLEAN else 3)


@pytest.mark.skipif(not UPDATE, reason="set EVT_UPDATE_GOLDEN=1 to rewrite the .err files")
def test_regenerate_golden_err() -> None:
    for name in CASES:
        if name in XFAIL_GOLDEN:
            continue  # hand-written: what evt check should print
        result = run_cli(["check", name], cwd=GOLDEN)
        (GOLDEN / name).with_suffix(".err").write_text(result.out + result.err, encoding="utf-8")


@pytest.mark.parametrize("name", CASES)
def test_expected_text_is_in_words(name: str) -> None:
    """Every expected diagnostic (hand-written ones too) names its file and line, quotes the
    source with a caret, and shows nothing of the parser's insides."""
    text = _expected(name)
    for word in FORBIDDEN:
        assert word not in text
    if name in CLEAN:
        assert text == ""
        return
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if ": error: " in line]
    assert heads and heads[0] == 0
    for i in heads:
        file, line, col = lines[i].split(": error: ")[0].rsplit(":", 2)
        assert file.endswith(".evt") and not os.path.isabs(file)
        assert int(line) >= 1 and int(col) >= 1
        # the quoted line is that line of that file, the caret under that column
        source = (GOLDEN / file).read_text(encoding="utf-8").split("\n")[int(line) - 1]
        assert lines[i + 1] == "    " + source.expandtabs(4)
        caret = 4 + len(source[: int(col) - 1].expandtabs(4))
        assert lines[i + 2] == " " * caret + "^"
        assert int(col) <= len(source) + 1
    if name.startswith("syntax_"):
        assert len(heads) == 1 and len(lines) == 4
        assert lines[-1] == f"1 error in {name} (checking stops at a syntax error)"
    else:
        n = len(heads)
        assert lines[-1] == f"{n} error{'s' if n != 1 else ''} in {name}"


def test_syntax_errors_are_never_worded_with_parser_internals() -> None:
    result = run_cli(["check", *[n for n in CASES if n.startswith("syntax_")]], cwd=GOLDEN)
    assert result.code == 3
    for word in FORBIDDEN:
        assert word not in result.out + result.err


def test_check_of_several_files_reports_each_and_the_worst_code() -> None:
    result = run_cli(["check", "clean.evt", "check_exit_code.evt", "syntax_elif.evt"],
                     cwd=GOLDEN)
    assert result.code == 3
    assert result.out == ""
    assert result.err == _expected("check_exit_code.evt") + _expected("syntax_elif.evt")


def test_clean_file_checks_clean() -> None:
    result = run_cli(["check", "clean.evt"], cwd=GOLDEN)
    assert (result.code, result.out, result.err) == (0, "", "")


def test_paths_are_printed_as_given() -> None:
    result = run_cli(["check", "./check_exit_code.evt"], cwd=GOLDEN)
    assert result.err.startswith("./check_exit_code.evt:2:10: error: ")
    result = run_cli(["check", str(GOLDEN / "check_exit_code.evt")])
    assert result.err.startswith(str(GOLDEN / "check_exit_code.evt") + ":2:10: error: ")


def test_a_password_in_a_url_is_not_quoted(tmp_path: Path) -> None:
    # a CI log keeps what `evt check` prints: the quoted line shows the password as stars
    # of its length, so the caret still points where it did
    path = tmp_path / "secret.evt"
    path.write_text('connection c { url = "ws://127.0.0.1:1/"; '
                    'proxy = "socks5://ana:s3cret@127.0.0.1:1080"; colour = 1 }\n')
    result = run_cli(["check", str(path)])
    assert result.code == 3
    assert "s3cret" not in result.err
    line, caret = result.err.splitlines()[1:3]
    assert 'proxy = "socks5://ana:******@127.0.0.1:1080"' in line
    assert line[caret.index("^"):].startswith("colour")
