"""Standard output, standard error and standard input without blocking the event loop.

Rules of this module:
- `print` and diagnostics never block the event loop: their bytes go into a bounded buffer
  that a writer thread drains into the file descriptor. A pipe nobody reads fills the
  buffer, not the loop: every other client, timer and signal goes on.
- When the buffer holds more than LIMIT bytes, the task whose handler printed waits until
  it is below LIMIT / 2 again: at its loop's next periodic yield, else before its source's
  next event (a connection's reader first sends the replies of the read it handled), or at
  the end of its timer block. Handlers that did not print go on. Only a burst that never
  yields can take the buffer past HARD_LIMIT: then output is dropped and counted.
- During the shutdown nothing waits for room. At the end the buffers get time to drain
  (no limit after a normal end, DRAIN_AFTER_SIGNAL after a signal, none after a second
  signal); what is left is dropped, and the bytes lost are told on standard error when it
  can take them.
- Standard output and standard error that are the same file (a terminal, `2>&1`) share one
  buffer and one thread, so their lines keep their order.
- Standard input is read with os.read, not through sys.stdin: a daemon thread blocked in
  sys.stdin's buffered reader makes the interpreter abort at exit ("could not acquire lock
  ... at interpreter shutdown").
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

LIMIT = 256 * 1024  # bytes buffered before a printing handler waits
HARD_LIMIT = 64 * 1024 * 1024  # bytes buffered before output is dropped (a burst)
CHUNK = 64 * 1024  # bytes per write
DRAIN_AFTER_SIGNAL = 2.0  # seconds the buffers get to drain after a signal
MAX_LINE = 16 * 1024 * 1024  # bytes: a longer line of standard input is taken in pieces

# Set in the task that wrote while the buffer was over LIMIT: that task waits at its next
# settle() (see the rules above); other tasks do not.
_owed: ContextVar[bool] = ContextVar("evt_output_owed", default=False)
_active: Stdio | None = None


class Output:
    """A bounded buffer in front of one file (one or two descriptors open on it), drained by
    a writer thread.

    The event loop only appends (deque.append is atomic) and counts what it added; the
    thread only pops and counts what it wrote: each counter has one writer, so the hot
    path, a print, takes no lock. The lock guards the thread's sleep and the waiters."""

    def __init__(self, name: str, limit: int = LIMIT, hard_limit: int = HARD_LIMIT) -> None:
        self.name = name
        self.limit = limit
        self.hard_limit = hard_limit
        self._chunks: deque[tuple[int, bytes]] = deque()
        self.added = 0  # bytes taken (the loop counts)
        self.written = 0  # bytes written, or dropped by the thread (the thread counts)
        self.lost = 0  # bytes dropped: over HARD_LIMIT, and what abandon() found left
        self.broken = False  # a write failed (EPIPE, EBADF ...): the rest is dropped
        self.closed = False
        self.on_broken: Callable[[], None] | None = None  # runs in the event loop
        self._cond = threading.Condition(threading.Lock())
        self._idle = False  # the thread sleeps: a write must wake it
        self._thread: threading.Thread | None = None
        self._token: Any = None  # the event loop's, to wake its waiters
        self._room: anyio.Event | None = None
        self._wake_at = 0  # wake the waiters when `held` is at most this

    @property
    def held(self) -> int:
        """Bytes taken and not yet written (with those being written)."""
        return self.added - self.written

    @property
    def over(self) -> bool:
        # each chunk counts for its bytes and its objects (a buffer of short lines)
        return (self.added - self.written + (len(self._chunks) << 6) > self.limit
                and not (self.broken or self.closed))

    def write(self, fd: int, data: bytes) -> bool:
        """Take bytes for `fd` (in the event loop); never blocks. True when the buffer is now
        over its limit."""
        if self.broken or self.closed:
            return False
        if self.added - self.written > self.hard_limit:
            self.lost += len(data)
            return True
        self._chunks.append((fd, data))
        self.added += len(data)
        if self._idle:
            with self._cond:
                self._idle = False
                self._cond.notify()
        elif self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"evt {self.name}")
            self._thread.start()
        return self.added - self.written + (len(self._chunks) << 6) > self.limit

    async def wait(self, level: int) -> None:
        """Wait (in the event loop) until at most `level` bytes are held, or the output is
        broken or closed."""
        while True:
            with self._cond:
                if self.held <= level or self.broken or self.closed:
                    return
                if self._token is None:
                    self._token = anyio.lowlevel.current_token()
                if self._room is None:
                    self._room = anyio.Event()
                    self._wake_at = level
                else:
                    self._wake_at = max(self._wake_at, level)
                room = self._room
            await room.wait()

    def abandon(self) -> None:
        """Drop what is held, the write in progress too (it is not known to have reached
        the file): it counts as lost. The thread stops after its write."""
        with self._cond:
            self.closed = True
            self.lost += self.held
            self._chunks.clear()
            self._cond.notify()
            room, self._room = self._room, None
        if room is not None:
            room.set()

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        chunks = self._chunks
        while True:
            if not chunks:
                with self._cond:
                    self._idle = True
                    while not chunks and not self.closed:
                        self._cond.wait()
                    self._idle = False
            if self.closed:
                return
            fd, data = chunks.popleft()
            if len(data) < CHUNK and chunks and chunks[0][0] == fd:
                parts = [data]  # the lines printed meanwhile, in one write
                size = len(data)
                while chunks and chunks[0][0] == fd and size < CHUNK:
                    part = chunks.popleft()[1]
                    parts.append(part)
                    size += len(part)
                data = b"".join(parts)
            failed = not self._write_all(fd, data)
            self.written += len(data)
            calls: list[Callable[[], Any]] = []
            with self._cond:
                if failed and not self.closed:
                    self.broken = True
                    if self.on_broken is not None:
                        calls.append(self.on_broken)
                if self._room is not None and (self.held <= self._wake_at or self.broken):
                    calls.append(self._room.set)
                    self._room = None
                token = self._token
            for fn in calls:  # outside the lock
                self._call(fn, token)
            if self.broken:  # drop what is left, and what comes
                while chunks:
                    self.written += len(chunks.popleft()[1])

    @staticmethod
    def _write_all(fd: int, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view[:CHUNK])
                view = view[n:]
        except OSError:
            return False
        return True

    @staticmethod
    def _call(fn: Callable[[], Any], token: Any) -> None:
        """Run fn in the event loop, from the writer thread."""
        if token is None:
            return
        try:
            anyio.from_thread.run_sync(fn, token=token)
        except Exception:  # the loop is gone: nobody waits any more
            pass


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _encoding(stream: Any) -> tuple[str, str]:
    return (getattr(stream, "encoding", None) or "utf-8",
            getattr(stream, "errors", None) or "backslashreplace")


_CLEAR = b"\r\x1b[K"  # back to the line's start, erase it


class Stdio:
    """What a running program prints: standard output and standard error, each behind a
    bounded buffer (one shared buffer when they are the same file)."""

    def __init__(self, out_fd: int = 1, err_fd: int = 2, limit: int = LIMIT) -> None:
        for stream in (sys.stdout, sys.stderr):  # what was written before goes first
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        self.out_fd, self.err_fd = out_fd, err_fd
        self.out_encoding = _encoding(sys.stdout)
        self.err_encoding = _encoding(sys.stderr)
        self.out = Output("stdout", limit)
        self.err = self.out if _same_file(out_fd, err_fd) else Output("stderr", limit)
        self.hold_back = True  # False during the shutdown: nothing waits for room
        # the live progress line (SPEC §12) on standard error, a terminal: every write to
        # that terminal clears it first and draws it again after
        self.status: str | None = None
        self._status_bytes = b""

    def attach(self, on_broken_stdout: Callable[[], None]) -> None:
        """In the event loop, before anything is printed: where to wake waiters, and what to
        do when standard output goes away (`evt run x | head`)."""
        global _active
        _active = self
        token = anyio.lowlevel.current_token()
        for output in (self.out, self.err):
            with output._cond:
                output._token = token
        self.out.on_broken = on_broken_stdout

    def write(self, text: str) -> None:
        """Standard output; never blocks."""
        data = text.encode(*self.out_encoding)
        if self.status is not None and self.out is self.err:
            data = _CLEAR + data + self._status_bytes
        if self.out.write(self.out_fd, data) and self.hold_back:
            _owed.set(True)

    def diag(self, text: str) -> None:
        """Standard error; never blocks."""
        data = text.encode(*self.err_encoding)
        if self.status is not None:
            data = _CLEAR + data + self._status_bytes
        if self.err.write(self.err_fd, data) and self.hold_back:
            _owed.set(True)

    def show_status(self, text: str | None) -> None:
        """Draw the one-line status on standard error in place of the last (None: clear
        it). Only for a terminal: the caller checks `isatty`."""
        if text is None and self.status is None:
            return  # nothing shown: nothing to erase
        self.status = text
        self._status_bytes = b"" if text is None else text.encode(*self.err_encoding)
        self.err.write(self.err_fd, _CLEAR + self._status_bytes)

    async def room(self) -> None:
        """Wait until both buffers are below half their limit."""
        for output in (self.out, self.err):
            if output.over:
                await output.wait(output.limit // 2)

    async def drain(self) -> None:
        """Wait until everything is written (or cannot be)."""
        for output in (self.out, self.err):
            await output.wait(0)

    def close(self) -> int:
        """Drop what is left. Returns the bytes of standard output lost (dropped now, or
        earlier over HARD_LIMIT), and tells them on standard error if it can take them."""
        global _active
        self.hold_back = False
        err_clear = self.err.held == 0 and not self.err.broken
        for output in (self.out, self.err):
            output.abandon()
        if _active is self:
            _active = None
        lost = self.out.lost
        if lost and err_clear and _writable(self.err_fd):
            text = (f"evt: {lost} bytes of standard output were lost: it was not read "
                    "in time\n")
            Output._write_all(self.err_fd, text.encode(*self.err_encoding))
        return lost


def _writable(fd: int) -> bool:
    try:
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        return any(ev & select.POLLOUT for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


# Whether the current task printed while the output was over its limit (asked before every
# handler: the ContextVar's own get, not a function around it)
owes: Callable[[], bool] = _owed.get


async def settle() -> None:
    """Where a handler that printed into a full buffer waits for room (a checkpoint)."""
    _owed.set(False)
    stdio = _active
    if stdio is not None and stdio.hold_back:
        await stdio.room()
    await anyio.lowlevel.checkpoint()


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
