"""Reading script files and following `import`.

Rules of this module:
- A file names its imports relative to its own directory; each file is read once, so an
  import cycle is harmless. Imported declarations take the place of the `import` line, which
  keeps "source order" meaningful across files.
- An unreadable main file is a usage error (exit 2); a bad import is a check error (exit 3).
"""

from __future__ import annotations

import os
import stat

from lang import ast as A
from lang.errors import SOURCES, Diagnostic, EvtUsageError
from lang.syntax.parser import parse_module

MAX_SOURCE = 100 * 1024 * 1024  # bytes: a larger file is not a script

# What a path that is not a regular file is, for the message.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_source(path: str) -> str:
    """The text of a script file. Only a regular file of at most MAX_SOURCE bytes of UTF-8
    text without NUL bytes is a source: a FIFO, a device (/dev/zero), a directory, or a
    /proc file reached through a link named *.evt is refused, and its contents are never
    shown (a link to /proc/self/environ printed the environment in a syntax error)."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise EvtUsageError(f"cannot read '{path}': {e.strerror or e}") from None
    try:
        data = _read_regular(path, fd)
    finally:
        os.close(fd)
    nul = data.find(b"\0")
    if nul >= 0:
        raise _not_source(path, f"it holds a NUL byte (at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_source(path, f"it is not UTF-8 text (bad byte at offset {e.start})") from None


def _read_regular(path: str, fd: int) -> bytes:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise _not_source(path, f"it is {kind}" if kind[0] == "a" else kind)
        if st.st_size > MAX_SOURCE:
            raise _too_large(path, st.st_size)
        chunks = []
        size = 0
        while chunk := os.read(fd, 1024 * 1024):
            size += len(chunk)
            if size > MAX_SOURCE:  # it grew since fstat
                raise _too_large(path, size)
            chunks.append(chunk)
    except OSError as e:
        raise EvtUsageError(f"cannot read '{path}': {e.strerror or e}") from None
    if st.st_size == 0 and size:
        # /proc and /sys files say size 0 and are made as they are read: not a script
        raise _not_source(path, "it is a file of the kernel (/proc or /sys), not a script")
    return b"".join(chunks)


def _not_source(path: str, why: str) -> EvtUsageError:
    return EvtUsageError(f"'{path}' is not a source file: {why}")


def _too_large(path: str, size: int) -> EvtUsageError:
    return _not_source(path, f"it is {size:,} bytes long (the most is {MAX_SOURCE:,})")


def load(path: str) -> tuple[list[A.Node], list[Diagnostic]]:
    """Parse `path` and everything it imports. Raises EvtUsageError (main file unreadable) and
    EvtSyntaxError; returns the declarations and the import problems found."""
    decls: list[A.Node] = []
    problems: list[Diagnostic] = []
    seen = {os.path.realpath(path)}
    SOURCES.set_anchor(path, ())
    _visit(path, read_source(path), decls, problems, seen)
    return decls, problems


def _visit(path: str, text: str, decls: list[A.Node], problems: list[Diagnostic],
           seen: set[str], anchor: tuple = ()) -> None:
    module = parse_module(text, path)
    base = os.path.dirname(path)
    for d in module.decls:
        if not isinstance(d, A.Import):
            decls.append(d)
            continue
        target = os.path.normpath(os.path.join(base, d.path)) if base else os.path.normpath(d.path)
        if not d.path.endswith(".evt"):
            problems.append(Diagnostic(d.span, f"import takes .evt files only, got '{d.path}'"))
            continue
        real = os.path.realpath(target)
        if real in seen:
            continue
        seen.add(real)
        try:
            imported = read_source(target)
        except EvtUsageError as e:
            problems.append(Diagnostic(d.span, e.message))
            continue
        child = (*anchor, (d.span.line, d.span.col))
        SOURCES.set_anchor(target, child)
        _visit(target, imported, decls, problems, seen, child)
