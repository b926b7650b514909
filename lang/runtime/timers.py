"""Timers: `every` and `after` blocks, top-level, scene-level or started by a statement,
each run with a fresh frame; a handle that `cancel` stops."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from lang import ast as A
from lang.runtime.core import (
    Inv,
)
from lang.runtime.host import Host
from lang.values import to_str


class TimerSpec:
    """A top-level or scene-level `every`/`after`: a fresh frame for each run."""

    __slots__ = ("body", "interval", "kind", "size", "span", "uses_expect", "what")

    def __init__(self, kind: str, interval: Any, body: Any, size: int, span: A.Span,
                 uses_expect: bool = True) -> None:
        self.uses_expect = uses_expect
        self.kind = kind
        self.interval = interval
        self.body = body
        self.size = size
        self.span = span
        self.what = f"{kind} block"


class TimerHandle:
    """A running timer. `every` runs its block inline in its own task, so a tick that comes
    due while the previous run is still going is skipped, not piled up."""

    evt_type = "timer"
    __slots__ = ("activation", "body", "cancelled", "fresh", "kind", "rt", "running", "scope",
                 "seconds", "span", "uses_expect", "what")

    def __init__(self, rt: Host, kind: str, seconds: float, body: Any, span: A.Span,
                 what: str, activation: Any, fresh: bool = False,
                 uses_expect: bool = True) -> None:
        self.rt = rt
        self.uses_expect = uses_expect
        self.kind = kind
        self.seconds = seconds
        self.body = body
        self.span = span
        self.what = what
        self.activation = activation
        self.fresh = fresh
        self.cancelled = False
        self.running = False
        self.scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<timer {self.kind} {to_str(self.seconds)}s>"

    def __str__(self) -> str:
        return repr(self)

    def begin(self, frame: list) -> None:
        rt = self.rt
        if rt.shutting_down:
            return
        (self.activation.timers if self.activation is not None else rt.timers).add(self)
        rt.hold()
        rt.spawn(self._run, frame)

    def evt_cancel(self) -> None:
        self.cancelled = True
        if not self.running and self.scope is not None:
            self.scope.cancel()

    async def _run(self, frame: list) -> None:
        rt = self.rt
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancelled:
                    return
                if self.kind == "after":
                    await anyio.sleep(self.seconds)
                    await self._once(frame)
                    return
                due = anyio.current_time() + self.seconds
                while not self.cancelled:
                    await anyio.sleep_until(due)
                    await self._once(frame)
                    now = anyio.current_time()
                    due += self.seconds
                    if due <= now:  # ticks that came due during the run are skipped
                        skipped = int((now - due) // self.seconds) + 1
                        due += skipped * self.seconds
        finally:
            (self.activation.timers if self.activation is not None else rt.timers).discard(self)
            rt.release()

    async def _once(self, frame: list) -> None:
        rt = self.rt
        if self.cancelled or rt.shutting_down or rt.exiting:
            return
        fr = list(frame) if self.fresh else frame
        fr[0] = Inv(rt, self.what, self.span)
        self.running = True
        if self.uses_expect:
            rt.expect_active += 1
        try:
            await rt.run_body(self.body, fr, self.what, self.span)
        finally:
            self.running = False
            if self.uses_expect:
                rt.expect_active -= 1
