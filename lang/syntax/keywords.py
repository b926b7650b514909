"""The keywords, read from the grammar: the one list the parser, the highlighter, the REPL's
completion and the parser's hints share (the grammar names each keyword as a terminal written
as a plain word, `LET: "let"`). Reading it costs one small file, not the parser."""

from __future__ import annotations

import re
from pathlib import Path

GRAMMAR = Path(__file__).with_name("grammar.lark")
CONSTANT_WORDS = ("true", "false", "null")


# keywords the grammar writes as a pattern (`else` takes the newlines before it)
_PATTERNS = {"else": "ELSE"}


def _read() -> dict[str, str]:
    text = GRAMMAR.read_text(encoding="utf-8")
    words = {m[2]: m[1] for m in re.finditer(r'^([A-Z_]+)(?:\.\d+)?:\s*"([a-z_]+)"\s*$', text,
                                             re.M)}
    for word, terminal in _PATTERNS.items():
        if re.search(rf"^{terminal}(?:\.\d+)?:", text, re.M):
            words[word] = terminal
    return words


TERMINALS: dict[str, str] = _read()  # keyword -> its terminal's name ("let" -> "LET")
# every keyword but the constants, in the grammar's order
KEYWORDS: tuple[str, ...] = tuple(w for w in TERMINALS if w not in CONSTANT_WORDS)
CONSTANTS: tuple[str, ...] = tuple(w for w in TERMINALS if w in CONSTANT_WORDS)
