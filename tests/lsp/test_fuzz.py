"""Garbage and half-typed text never break `evt lsp`: random insertions and deletions into
the example files, sent as incremental didChange over the real stdio connection. After each
change the server publishes diagnostics for that version (none of them an internal error,
every range inside the document), and it answers every request: completion, hover,
definition and document symbols at random places.

The edits are applied to a copy here too; at the end the document is reopened whole, and
its diagnostics must be those published for the last edit: the server's copy of the text
followed the edits exactly (line breaks of three kinds, characters outside the BMP and form
feeds included).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lspclient import ROOT, Client, uri

EXAMPLES = sorted((ROOT / "examples").rglob("*.evt"))
_BREAK = re.compile(r"\r\n|\r|\n")
# pieces of evt and of what half-typed evt looks like, and characters that are hard on
# position arithmetic (U+2028 and \f are not line breaks in LSP; an emoji is two UTF-16 units)
PIECES = ["{", "}", "(", ")", "[", "]", '"', "'", "${", "b\"", "\\", "#", "\n", "\r\n", "\r",
          ";", ",", ".", ":", "=", "==", " ", "\t", "\f", "\u2028", "😀", "é", "\x00",
          "connection ", "server ", "on websocket receive ", "let ", "func ", "scene ",
          "import \"", "send ", "expect ", "else", "1s", "64KiB", "0x", "1e", "x", "echo",
          "every 1s {", "}\n", "print ", "not in", "open "]
_counter = itertools.count()


def _position(text: str, offset: int) -> dict[str, int]:
    line = len(_BREAK.findall(text, 0, offset))
    start = 0
    for m in _BREAK.finditer(text, 0, offset):
        start = m.end()
    col = sum(2 if ord(c) > 0xFFFF else 1 for c in text[start:offset])
    return {"line": line, "character": col}


def _safe(text: str, offset: int) -> int:
    """Never between the \\r and \\n of one line break (LSP positions cannot say that)."""
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        return offset - 1
    return offset


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    c = Client(cwd=root)
    try:
        c.initialize(root)
        yield c, root
        assert c.close() == 0
    finally:
        c.kill()


edit = st.tuples(st.floats(0, 1), st.integers(0, 12),
                 st.lists(st.sampled_from(PIECES), max_size=4).map("".join),
                 st.sampled_from(["none", "completion", "hover", "definition", "symbols"]),
                 st.floats(0, 1))


def _check(diagnostics: list[dict], text: str) -> None:
    lines = _BREAK.split(text)
    for d in diagnostics:
        assert not d["message"].startswith("evt lsp: internal error"), d["message"]
        for end in ("start", "end"):
            pos = d["range"][end]
            assert 0 <= pos["line"] < len(lines), d
            units = sum(2 if ord(c) > 0xFFFF else 1 for c in lines[pos["line"]])
            assert 0 <= pos["character"] <= units, d


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(EXAMPLES), st.lists(edit, min_size=1, max_size=6))
def test_random_edits_never_break_the_server(server: tuple[Client, Path], example: Path,
                                             edits: list) -> None:
    client, root = server
    path = root / f"doc{next(_counter)}.evt"
    doc = uri(path)
    text = example.read_text(encoding="utf-8")
    client.open(doc, text, 1)
    _check(client.diagnostics(doc, 1), text)
    version = 1
    last: list[dict] = []
    for where, length, insert, request, at in edits:
        start = _safe(text, int(where * len(text)))
        end = _safe(text, min(start + length, len(text)))
        range_ = {"start": _position(text, start), "end": _position(text, end)}
        text = text[:start] + insert + text[end:]
        version += 1
        client.change(doc, version, insert, range_)
        last = client.diagnostics(doc, version)
        _check(last, text)
        if request != "none":
            pos = _position(text, _safe(text, int(at * len(text))))
            if request == "symbols":
                client.request("textDocument/documentSymbol", {"textDocument": {"uri": doc}})
            else:
                client.at(f"textDocument/{request}", doc, pos["line"], pos["character"])
    client.notify("textDocument/didClose", {"textDocument": {"uri": doc}})
    assert client.diagnostics(doc) == []
    client.open(doc, text, version + 1)
    assert client.diagnostics(doc, version + 1) == last
    client.notify("textDocument/didClose", {"textDocument": {"uri": doc}})
    client.diagnostics(doc)
