"""Standard input without blocking the event loop, and without the interpreter's buffers.

Rules of this module:
- Standard input is read with os.read, not through sys.stdin: a daemon thread blocked in
  sys.stdin's buffered reader makes the interpreter abort at exit ("could not acquire lock
  ... at interpreter shutdown").
- It is read in reads of CHUNK bytes, handed over as the lines of each read; the reader
  (a thread) waits when its consumer's bounded queue is full.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

CHUNK = 64 * 1024  # bytes per read
MAX_LINE = 16 * 1024 * 1024  # bytes: a longer line of standard input is taken in pieces


# ---------------------------------------------------------------- standard input


class Piece(bytes):
    """A piece of a line of standard input longer than MAX_LINE."""


def read_lines(fd: int = 0, max_line: int = MAX_LINE, chunk: int = CHUNK
               ) -> Iterator[list[bytes]]:
    """The lines read from `fd`, in batches (the lines of one read), without their b"\\n".
    A last line without one counts; a line longer than max_line comes in pieces (Piece)."""
    held: list[bytes] = []
    held_len = 0
    while True:
        try:
            data = os.read(fd, chunk)
        except OSError:
            data = b""
        if not data:
            if held:
                yield [b"".join(held)]
            return
        lines: list[bytes] = []
        start = 0
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                break
            piece = data[start:i]
            if held:
                held.append(piece)
                piece = b"".join(held)
                held, held_len = [], 0
            lines.append(piece)
            start = i + 1
        if start < len(data):
            rest = data[start:]
            held.append(rest)
            held_len += len(rest)
        while held_len > max_line:
            joined = b"".join(held)
            lines.append(Piece(joined[:max_line]))
            rest = joined[max_line:]
            held, held_len = [rest], len(rest)
        if lines:
            yield lines
