"""Errors of evt, one type per kind, each able to format itself.

Rules of this module:
- "Your script is wrong" is an EvtError with a span; "we are broken" is any other exception.
- Library code raises; only the CLI and the REPL print and choose exit codes.
- A diagnostic is `file:line:col: error: message`, then the source line, then a caret under the
  spot. Source text is looked up in SOURCES, which the parser fills as it reads files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lang.ast import NOSPAN, Span


class _Sources:
    """The text of every file (or REPL input) that was parsed, for quoting in diagnostics."""

    def __init__(self) -> None:
        self._lines: dict[str, list[str]] = {}
        self._anchors: dict[str, tuple] = {}

    def set_anchor(self, file: str, anchor: tuple) -> None:
        """Where a file's text stands in the program: () for the main file, else the anchor
        of the importing file plus the position of the `import` line."""
        self._anchors[file] = anchor

    def order_key(self, span: Span) -> tuple:
        """Sorts diagnostics in source order, imported files at their `import` line."""
        return (*self._anchors.get(span.file, ((1 << 30, span.file),)), (span.line, span.col))

    def add(self, file: str, text: str) -> None:
        self._lines[file] = text.split("\n")

    def extend(self, file: str, text: str) -> int:
        """Append text to a growing source (the REPL); return the line number it starts at."""
        lines = self._lines.setdefault(file, [])
        start = len(lines) + 1
        lines.extend(text.split("\n"))
        return start

    def next_line(self, file: str) -> int:
        """The line number the next `extend` of this source starts at."""
        return len(self._lines.get(file, ())) + 1

    def line(self, file: str, line: int) -> str | None:
        lines = self._lines.get(file)
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1]


SOURCES = _Sources()


def quote_source(span: Span) -> str:
    """The source line of a span and a caret under its column, or '' when unknown."""
    text = SOURCES.line(span.file, span.line)
    if text is None:
        return ""
    text = text.rstrip("\r")
    col = max(span.col, 1)
    if len(text) > _WIDE:  # a very long line: a window around the spot
        start = max(col - 1 - _WIDE // 2, 0)
        end = start + _WIDE
        text, col = ("..." if start else "") + text[start:end] + ("..." if end < len(text)
                                                                  else ""), \
            col - start + (3 if start else 0)
    if "://" in text:  # (on the window only: a 10 MB line must not be searched)
        text = _CREDENTIALS.sub(lambda m: m[1] + "*" * len(m[2]) + "@", text)
    prefix = text[: col - 1].expandtabs(4)
    shown = text.expandtabs(4)
    return f"    {shown}\n    {' ' * len(prefix)}^\n"


_WIDE = 120  # characters of a source line quoted around the caret
# a password in a URL (`socks5://ana:secret@host`) is quoted as stars of its length, so the
# caret stays where it was and a CI log does not keep the secret
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@\"']*:)([^\s/@\"']+)@")


@dataclass
class Diagnostic:
    span: Span
    message: str
    severity: str = "error"

    def format(self) -> str:
        where = str(self.span) if self.span is not NOSPAN else "evt"
        return f"{where}: {self.severity}: {self.message}\n{quote_source(self.span)}"


class EvtError(Exception):
    """Base of every error that is the script's fault, not ours."""

    def format(self) -> str:
        raise NotImplementedError


class EvtSyntaxError(EvtError):
    """The source does not parse. `incomplete` is true when more input could complete it
    (an open bracket or block, a trailing operator), which the REPL uses to ask for more."""

    def __init__(self, span: Span, message: str, incomplete: bool = False) -> None:
        super().__init__(message)
        self.diagnostic = Diagnostic(span, message)
        self.incomplete = incomplete

    @property
    def span(self) -> Span:
        return self.diagnostic.span

    def format(self) -> str:
        return self.diagnostic.format()


class EvtCheckError(EvtError):
    """Static problems: every one found in one run, in source order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s)")
        self.diagnostics = diagnostics

    def format(self) -> str:
        return "".join(d.format() for d in self.diagnostics)


@dataclass
class Frame:
    """One level of the evt-level traceback: a function call or the handler itself."""

    what: str
    span: Span


@dataclass
class EvtRuntimeError(EvtError):
    """A runtime error: aborts one handler invocation, never the program."""

    message: str
    span: Span = NOSPAN
    frames: list[Frame] = field(default_factory=list)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def format(self) -> str:
        where = str(self.span) if self.span is not NOSPAN else "evt"
        out = [f"{where}: runtime error: {self.message}\n", quote_source(self.span)]
        out += format_frames(self.frames)
        return "".join(out)


def format_frames(frames: list[Frame], limit: int = 12) -> list[str]:
    """The evt-level traceback, innermost first: runs of the same frame (recursion) shown
    once with a count, and at most `limit` lines in all."""
    lines: list[str] = []
    i = 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[i]:
            j += 1
        lines.append(f"  in {frames[i].what} ({frames[i].span})\n")
        if j > i:
            lines.append(f"  ... the same call {j - i} more time{'s' if j - i > 1 else ''}\n")
        i = j + 1
    if len(lines) > limit:
        half = limit // 2
        lines = [*lines[:half], f"  ... {len(lines) - limit} more\n", *lines[-half:]]
    return lines


class EvtUsageError(EvtError):
    """Bad command line or unreadable file: exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def format(self) -> str:
        return f"evt: error: {self.message}\n"


class AtToken(Exception):
    """Raised inside the transformer: a literal-level syntax error at a token (+offset)."""

    def __init__(self, tok: Any, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.tok = tok
        self.message = message
        self.offset = offset
