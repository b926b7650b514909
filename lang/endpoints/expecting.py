"""The `expect` statement on a channel (SPEC §8): the look through the channel's log of
recent messages, and the wait for the next one (a mixin of lang.endpoints.channel's
Channel, over its slots: log, _arrived, _alarm, _space, ws, rt, tally, endpoint)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from lang import ast as A
from lang.endpoints.payloads import convert
from lang.runtime import virtualtime

INF = float("inf")
clock = virtualtime.monotonic  # metrics' clock (SPEC §12): --virtual-time's when it runs


class Expecting:
    """What a Channel does for `expect`."""

    __slots__ = ()

    async def evt_expect(self, inv: Any, mode: str | None,
                         matches: Callable[[Any], Awaitable[bool]], seconds: float,
                         span: A.Span) -> tuple[bool, Any]:
        """The next message since this handler's latest send to this channel (or since it
        began) for which `matches` holds: (True, message); otherwise (False, why): None on
        timeout, or the words for a channel that is not connected or ended meanwhile."""
        was_open = self.expect_can_wait()
        marks = inv.marks
        scanned = marks.get(self, inv.start_seq) if marks else inv.start_seq
        taken = inv.taken
        if taken is None:
            taken = inv.taken = set()
        loop = self.endpoint.loop()
        deadline = loop.time() + seconds  # anyio.current_time()'s clock (the alarms')
        waiter = None
        try:
            while True:
                log = self.log  # a look costs what is new, not the whole log (a handler
                if log and log[-1][0] > scanned:  # doing many round trips would otherwise
                    fresh = []  # scan ever more of it); oldest first
                    for entry in reversed(log):
                        if entry[0] <= scanned:
                            break
                        fresh.append(entry)
                    fresh.reverse()
                    for seq, msg in fresh:
                        if seq in taken:
                            continue
                        scanned = seq
                        try:
                            value = convert(msg, mode)
                        except ValueError:
                            continue
                        if await matches(value):
                            taken.add(seq)
                            tally = self.tally
                            if tally is not None:  # ws_expect_duration: reply latency
                                sent = inv.sent_at.get(self) if inv.sent_at else None
                                tally.expect_duration.add(
                                    clock() - (sent if sent is not None else inv.started))
                            return True, value
                if not self.expect_can_wait():
                    return False, ("the connection closed before a matching message came"
                                   if was_open else "not connected")
                if loop.time() >= deadline:
                    return False, None
                # a future of its own (a cancelled wait must not cancel another's), woken
                # by the next message (_arrive), the connection's end or the deadline
                waiter = loop.create_future()
                waiting = self._arrived
                if waiting is None:
                    self._arrived = [waiter]
                else:
                    waiting.append(waiter)
                if self._space is not None:  # a reader held back by a full queue reads on
                    self._space.set()
                    self._space = None
                if deadline != INF:
                    self._wake_by(deadline)
                await waiter
        finally:
            if waiter is not None and waiter.cancelled():
                self._give_up(waiter)

    def _wake_by(self, deadline: float) -> None:
        """See that the waiting `expect`s are woken once `deadline` passes, as a message
        would wake them (no cancel scope). One alarm per channel, left set when an
        `expect` ends: the round trips that follow, each with a later deadline, need no
        alarm of their own (one that rings early wakes them to look and wait again, and
        the next wait sets the alarm anew)."""
        alarm = self._alarm
        if alarm is not None and alarm.fire is not None:  # set, not rung nor withdrawn
            if alarm.deadline <= deadline:
                return
            alarm.cancel()  # a sooner one takes its place
        self._alarm = self.rt.alarm(deadline, self.wake_expect)

    def _give_up(self, waiter: asyncio.Future[None]) -> None:
        """A wait that was cancelled leaves the waiting list (no `expect` waits any more:
        a full queue holds the reader back again)."""
        waiting = self._arrived
        if waiting is not None and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                self._arrived = None

    def expect_can_wait(self) -> bool:
        return self.ws is not None and self.ws.closed is None

    def wake_expect(self) -> None:
        """A message came, the connection ended, or an `expect`'s deadline passed: every
        `expect` waiting on it looks again."""
        waiting = self._arrived
        if waiting is not None:
            self._arrived = None
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_result(None)
