"""Small runtime types shared by the compiler and the interpreter.

Rules of this module:
- An Inv is one handler invocation (or one run of a timer block): it carries the recursion
  depth and what `expect` has seen. Frames point to it from slot 0.
- ExitRequest and AssertFailed are control flow, not errors: they end the program through the
  normal shutdown.
"""

from __future__ import annotations

import signal
from typing import Any

import anyio.lowlevel

from lang.ast import Span
from lang.limits import MAX_DEPTH, raise_recursion_limit  # noqa: F401 - re-exported
from lang.runtime import stdio, virtualtime


async def checkpoint() -> None:
    """A long loop's periodic yield. A loop that printed into a full output buffer waits
    here for room (lang.runtime.stdio): the printing handler waits, nothing else does."""
    if stdio.owes():
        await stdio.settle()
    else:
        await anyio.lowlevel.checkpoint()


def shutdown_signals() -> list[int]:
    """The signals that run the shutdown: SIGINT, SIGTERM, and SIGHUP unless it was ignored
    when evt started (`nohup evt run ...`: keep ignoring it)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        signals.append(hup)
    return signals


def signal_exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (130 SIGINT, 143 SIGTERM,
    129 SIGHUP)."""
    return 128 + int(signum)


_clock = virtualtime.monotonic  # time.monotonic(), or the clock of --virtual-time


class Inv:
    """One invocation of a handler, a function's caller chain, or a timer block run."""

    __slots__ = ("depth", "marks", "rt", "sent_at", "span", "start_seq", "started", "taken",
                 "what")

    def __init__(self, rt: Any, what: str, span: Span, depth: int = 0) -> None:
        self.rt = rt
        self.what = what
        self.span = span
        self.depth = depth
        self.marks: dict[Any, int] | None = None  # expect: per target, the seq of the last send
        self.sent_at: dict[Any, float] | None = None  # ... and when it was sent (metrics)
        self.taken: set[int] | None = None  # expect: messages already matched
        self.start_seq = rt.message_seq
        self.started = _clock()  # ws_expect_duration's start when nothing was sent


class FuncCell:
    """A user function, looked up by its call sites at run time (the REPL may redefine it)."""

    __slots__ = ("body", "is_async", "name", "nparams", "size", "span")

    def __init__(self, name: str, nparams: int, is_async: bool, span: Span) -> None:
        self.name = name
        self.nparams = nparams
        self.is_async = is_async
        self.span = span
        self.body: Any = None
        self.size = 3


class ExitRequest(Exception):  # control flow, not an error
    """`exit [code]`: run the shutdown and end with code (None: 0, or 1 after errors)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class RejectRequest(Exception):  # control flow, not an error
    """`reject STATUS [, BODY]` (SPEC §15): the upgrade request is refused."""

    def __init__(self, status: int, body: str, span: Span) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.span = span


class SkipRequest(Exception):  # control flow, not an error
    """`skip [message]` (SPEC §13): the test's body ends and the test is skipped."""

    def __init__(self, message: str, span: Span) -> None:
        super().__init__(message)
        self.message = message
        self.span = span


class AssertFailed(Exception):  # control flow, not an error
    def __init__(self, message: str, span: Span) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
