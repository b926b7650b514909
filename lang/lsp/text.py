"""Open documents and positions in them: lines as the protocol counts them, the editor's
column units, and a forgiving scanner for what the parser cannot tell a broken text about.

Rules of this module:
- A line ends at "\\r\\n", "\\r" or "\\n" and nowhere else (LSP 3.17, "Text Documents"); the
  evt parser counts lines the same way (it reads "\\r" as a newline), so a span's line is the
  document's line. A form feed or U+2028 is not a line break here, whatever str.splitlines
  says.
- Offsets are indices into the Python string (code points). The editor counts columns in
  the position encoding agreed at `initialize`: UTF-16 code units unless it offered another.
- The scanner never fails: an unclosed string runs to the end of its line, a character the
  language has no use for is a token of its own. It serves ranges, words and contexts only;
  the parser stays the judge of what is valid.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_BREAK = re.compile(r"\r\n|\r|\n")

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(text: str, encoding: str) -> int:
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _index(text: str, units: int, encoding: str) -> int:
    """The index in `text` at `units` code units (clamped to the text)."""
    if encoding == UTF32 or text.isascii():
        return min(max(units, 0), len(text))
    count = 0
    for i, c in enumerate(text):
        if count >= units:
            return i
        count += len(c.encode("utf-8", "surrogatepass")) if encoding == UTF8 else (
            2 if ord(c) > 0xFFFF else 1)
    return len(text)


@dataclass
class Document:
    """The text of one open document, as the editor has it."""

    uri: str
    path: str
    text: str
    version: int | None = None
    _starts: list[int] | None = field(default=None, repr=False)

    @property
    def starts(self) -> list[int]:
        """The offset where each line starts."""
        if self._starts is None:
            self._starts = [0, *(m.end() for m in _BREAK.finditer(self.text))]
        return self._starts

    def line_text(self, line: int) -> str:
        """Line `line` (from 0) without its line break; "" past the end."""
        starts = self.starts
        if not 0 <= line < len(starts):
            return ""
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        return self.text[starts[line]:end].rstrip("\r\n")

    def offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        """The offset of an editor position (clamped into the text)."""
        starts = self.starts
        if line < 0:
            return 0
        if line >= len(starts):
            return len(self.text)
        return starts[line] + _index(self.line_text(line), character, encoding)

    def position(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        """The editor position (line, character) of an offset."""
        offset = min(max(offset, 0), len(self.text))
        line = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        text = self.line_text(line)
        return line, _units(text[: min(offset - start, len(text))], encoding)

    def apply(self, text: str, start: tuple[int, int] | None = None,
              end: tuple[int, int] | None = None, encoding: str = UTF16) -> None:
        """Replace the range start..end (editor positions), or everything, with `text`."""
        if start is None or end is None:
            self.text = text
        else:
            a = self.offset(*start, encoding)
            b = max(self.offset(*end, encoding), a)
            self.text = self.text[:a] + text + self.text[b:]
        self._starts = None


# ---------------------------------------------------------------- the scanner

_TOKEN = re.compile(r"""
  (?P<comment>\#[^\r\n]*+)
| (?P<string>b?"(?:[^"\\\r\n]++|\\[^\r\n])*+"?|b?'(?:[^'\\\r\n]++|\\[^\r\n])*+'?)
| (?P<number>[0-9][A-Za-z0-9_]*+(?:\.[0-9][A-Za-z0-9_]*+)?)
| (?P<name>[A-Za-z_][A-Za-z0-9_]*+)
| (?P<op>==|!=|<=|>=|[-+*/%<>=(){}\[\],:.;\\])
| (?P<nl>\r\n|\r|\n)
| (?P<space>[ \t\f]++)
| (?P<other>.)""", re.X | re.S)
# what an error inside a string points at: an escape, a '${', or a token of the ${ } code
_IN_STRING = re.compile(r"""\\(?:x[0-9a-fA-F]{0,2}|u\{[0-9a-fA-F]*\}?|[^\r\n])|\$\{""")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSED = re.compile(r"""b?"(?:[^"\\\r\n]++|\\[^\r\n])*+"|b?'(?:[^'\\\r\n]++|\\[^\r\n])*+'""")


@dataclass(frozen=True)
class Token:
    kind: str  # comment string number name op nl space other
    start: int
    end: int
    text: str


def tokens(text: str, start: int = 0, end: int | None = None) -> list[Token]:
    """The tokens of text[start:end]."""
    end = len(text) if end is None else end
    out = []
    pos = start
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos, end)
        assert m is not None  # `other` matches any character
        kind = m.lastgroup or "other"
        out.append(Token(kind, pos, m.end(), m.group()))
        pos = m.end()
    return out


def token_range(doc: Document, offset: int) -> tuple[int, int]:
    """The offsets a diagnostic at `offset` covers: the token that starts there; inside a
    string, the escape, '${' or token there (never past the string); nothing (an empty
    range) at a line break, a space or the end of the text."""
    line = bisect.bisect_right(doc.starts, offset) - 1
    line_start = doc.starts[line]
    line_end = line_start + len(doc.line_text(line))
    if offset >= line_end:
        return offset, offset
    for tok in tokens(doc.text, line_start, line_end):
        if tok.end <= offset:
            continue
        if tok.kind == "space":
            return offset, offset
        if tok.start == offset or tok.kind != "string":
            return offset, max(tok.end, offset)
        inner = _IN_STRING.match(doc.text, offset, tok.end)
        if inner is None:
            inner = _TOKEN.match(doc.text, offset, tok.end)
        end = inner.end() if inner is not None else offset + 1
        return offset, min(max(end, offset + 1), tok.end)
    return offset, offset


def word_at(text: str, offset: int) -> tuple[int, int, str] | None:
    """The name under (or just before) `offset`: (start, end, word), or None."""
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_") \
            and text[start - 1].isascii():
        start -= 1
    m = _WORD.match(text, start)
    if m is None or m.end() < offset:
        return None
    return start, m.end(), m.group()


def statement_end(text: str, offset: int) -> int:
    """Where the statement around `offset` ends: the first line break or ';' after it that
    is outside brackets (the end of the text when brackets never close)."""
    depth = 0
    for tok in tokens(text, offset):
        if tok.kind == "op" and tok.text in "([{":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]}":
            depth -= 1
            if depth < 0:  # the block around the statement closes
                return tok.start
        elif depth == 0 and (tok.kind == "nl" or tok.text == ";"):
            return tok.start
    return len(text)


def next_char(text: str, offset: int) -> str:
    """The first character after `offset` that is not a space or tab ("" at the end)."""
    m = re.compile(r"[ \t\f]*").match(text, offset)
    end = m.end() if m else offset
    return text[end] if end < len(text) else ""


# ---------------------------------------------------------------- completion context


def _in_interpolation(head: str) -> bool:
    """Whether the end of `head` (the start of a string, up to the cursor) is inside `${ }`
    (the braces of a map literal in there counted)."""
    if head.startswith("b"):
        return False  # bytes have no interpolation
    depth = 0
    i = 1
    while i < len(head):
        c = head[i]
        if c == "\\" and depth == 0:
            i += 2
            continue
        if depth == 0 and head.startswith("${", i):
            depth = 1
            i += 2
            continue
        if depth and c == "{":
            depth += 1
        elif depth and c == "}":
            depth -= 1
        i += 1
    return depth > 0

_CONFIG = {"connection", "server"}


@dataclass(frozen=True)
class Context:
    """Where the cursor stands, for completion and hover.

    `role` is "connection", "server" or "cluster" when the innermost open brace is such a
    block;
    `before` the words and symbols of the current statement before the word at the cursor;
    `prefix` the part of that word before the cursor; `in_string`/`in_comment` say the
    cursor is inside one (nothing is completed there)."""

    role: str | None
    before: tuple[str, ...]
    prefix: str
    in_string: bool = False
    in_comment: bool = False

    @property
    def at_key(self) -> bool:
        """At the start of an entry of a connection, server or cluster block."""
        return self.role is not None and not self.before


def context_at(text: str, offset: int) -> Context:
    """The context of the cursor at `offset` (read from the start of the text)."""
    braces: list[str | None] = []  # per open '{': the role of a config block, else None
    stmt: list[str] = []
    prefix = ""
    for tok in tokens(text, 0, offset):
        if tok.kind in ("space",):
            continue
        if tok.end == offset and tok.kind in ("comment", "string"):
            if tok.kind == "string" and not _CLOSED.fullmatch(tok.text) and \
                    _in_interpolation(tok.text):
                m = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", tok.text)
                return Context(None, (), m.group() if m else "")
            if tok.kind == "comment" or not _CLOSED.fullmatch(tok.text):
                return Context(None, tuple(stmt), "", in_string=tok.kind == "string",
                               in_comment=tok.kind == "comment")
        if tok.kind == "comment":
            continue
        if tok.kind == "nl" or tok.text == ";":
            stmt = []
        elif tok.text == "{":
            role = stmt[0] if (len(stmt) == 2 and stmt[0] in _CONFIG) or \
                (stmt == ["cluster"] and not braces) else None
            braces.append(role)
            stmt = []
        elif tok.text == "}":
            if braces:
                braces.pop()
            stmt = []
        elif tok.kind == "name" and tok.end == offset:
            prefix = tok.text
        else:
            stmt.append(tok.text)
    role = braces[-1] if braces else None
    return Context(role, tuple(stmt), prefix)
