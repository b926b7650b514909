"""`--virtual-time` (SPEC §13): an asyncio event loop whose clock jumps over idle waits.

The loop's `time()` is `time.monotonic() + offset`: virtual time is real elapsed time plus
the jumps made so far, so it never stands still while the program computes (no livelock:
a busy program simply runs in real time) and only idle waits are skipped.

The jump happens in the selector's `select(timeout)`, the one place where the loop waits:

- timeout None (no timer at all) or <= 0 (work is ready): the real select, as it is;
- otherwise the real select for at most IDLE seconds. Events: they are returned (no jump).
  None, and no work of the loop is pending in threads: the offset grows so that the next
  timer is due now, and the loop runs it at once. Work pending in a thread: the real select
  for the rest of the timeout (the thread wakes the loop when it is done).

The IDLE real wait is what makes this safe with real sockets (trio-websocket issue #94,
trio's `autojump_threshold`): loopback data one task of this loop wrote is normally readable
at once, but the kernel may need a moment to deliver it (a connect, a softirq run late on a
busy machine). While a thread resolves a name (`loop.getaddrinfo`) or runs any other
`run_in_executor` job, or an `anyio.to_thread.run_sync` job of anyio's default limiter runs,
the clock does not jump: the loop waits in real time until the thread reports (looptime
counts executor futures the same way). A peer in another process, a thread started by hand
(evt's stdin reader) or a job of another anyio limiter is not seen: the clock may jump while
it works. A deadline past HORIZON is never jumped to.

`monotonic()` and `wall()` are the virtual versions of `time.monotonic()` / `time.time()`
for the rest of evt (plain when no virtual loop runs: one program per process uses them).
Modules that may not import lang.runtime (stdlib, metrics) read the running loop's
`clock_offset` attribute instead, which this loop has and others do not.
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
import sys
import time
from typing import Any

# Seconds of real time with no I/O (and no thread work) before the clock jumps: long enough
# for the kernel to hand over loopback data in flight (200 echo round trips under load never
# saw a jump), short enough that a test with dozens of timeouts (every jump costs IDLE of
# real time) ends in about a second.
IDLE = 0.02

# A deadline further than this (about 3 years) is never jumped to: evt takes a duration
# over 10^9 s as "never", and such a wait must stay a wait (as without --virtual-time).
HORIZON = 1e8

_offset = 0.0  # the virtual loop's jumps so far (0 when none runs)
_current: VirtualTimeLoop | None = None


def monotonic() -> float:
    """`time.monotonic()` on the virtual clock: the virtual loop's `time()`."""
    return time.monotonic() + _offset


def wall() -> float:
    """`time.time()` moved on by the same jumps (Unix seconds)."""
    return time.time() + _offset


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new virtual-time loop (a `loop_factory` for anyio.run / asyncio.Runner); it becomes
    the one `monotonic()` and `wall()` follow."""
    return VirtualTimeLoop()


class _Selector(selectors.DefaultSelector):
    """The loop's selector: select() waits at most IDLE for real, then lets the loop jump."""

    loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0 or self.loop is None:
            return super().select(timeout)
        began = time.monotonic()
        ready = super().select(min(timeout, IDLE))
        if ready or timeout <= IDLE or self.loop.jump():
            return ready
        # no jump (a thread works, or the timer is past the HORIZON): wait as a plain loop
        # does; a thread that finishes wakes the loop (call_soon_threadsafe), and the next
        # idle moment may jump
        return super().select(max(0.0, timeout - (time.monotonic() - began)))


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on the virtual clock. Signals, sockets and executors work as on
    any SelectorEventLoop."""

    def __init__(self) -> None:
        global _offset, _current
        selector = _Selector()
        super().__init__(selector)
        self.clock_offset = 0.0  # read by stdlib.timefns and lang.metrics (see above)
        self.jumps = 0
        self._in_threads = 0  # run_in_executor jobs (getaddrinfo ...) not yet reported
        selector.loop = self
        _offset, _current = 0.0, self

    def time(self) -> float:
        return time.monotonic() + self.clock_offset

    def jump(self) -> bool:
        """Nothing happened for IDLE: move the clock to the next timer, unless work is
        pending in a thread or the timer is past the HORIZON. False when the loop must wait
        for the rest of its timeout in real time."""
        global _offset
        if self._in_threads or _anyio_threads_busy():
            return False
        # BaseEventLoop's timer heap: its head is not cancelled when select runs (_run_once
        # drops those first); called from elsewhere, the next live timer is looked for
        scheduled: list[asyncio.TimerHandle] = self._scheduled
        live = [scheduled[0]] if scheduled and not scheduled[0].cancelled() else [
            h for h in scheduled if not h.cancelled()]
        if not live:
            return False
        ahead = min(h.when() for h in live) - self.time()
        if ahead >= HORIZON:
            return False
        if ahead > 0:
            self.clock_offset += ahead
            self.jumps += 1
            if _current is self:
                _offset = self.clock_offset
        return True

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self._in_threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._in_threads -= 1

    async def shutdown_default_executor(self, *args: Any) -> None:
        # joining the executor's threads happens in a thread of its own (with a timeout of
        # 300 s on the loop's clock since Python 3.12): no jump while it runs
        self._in_threads += 1
        try:
            await super().shutdown_default_executor(*args)
        finally:
            self._in_threads -= 1

    def close(self) -> None:
        global _offset, _current
        super().close()
        if _current is self:
            _offset, _current = 0.0, None


def _anyio_threads_busy() -> bool:
    """Whether an `anyio.to_thread.run_sync` job of anyio's default limiter is running: its
    borrowed tokens (anyio has no public count of busy worker threads). Called from select,
    outside any task, so anyio is told the library explicitly (sniffio's context variable)."""
    to_thread = sys.modules.get("anyio.to_thread")
    if to_thread is None:  # nothing imported it: nothing ran in anyio's threads
        return False

    def borrowed() -> float:
        sniffio = sys.modules.get("sniffio")
        if sniffio is not None:
            sniffio.current_async_library_cvar.set("asyncio")
        return float(to_thread.current_default_thread_limiter().borrowed_tokens)

    try:
        return contextvars.copy_context().run(borrowed) > 0
    except Exception:  # anyio does not run on this loop: none of its threads either
        return False
