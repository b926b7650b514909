"""Deadlines for many waits with one task: `expect ... within` without a cancel scope each.

A cancel scope with a deadline (anyio's `move_on_after`) costs a timer handle, task lookups
and a scope to enter and leave: about a tenth of a load generator's CPU when every round trip
is an `expect ... within`. An `expect` already waits on an event that a new message sets;
for its deadline it only needs that event set once more when the deadline passes. Alarms
keeps the deadlines in a heap and one task that sleeps until the earliest; an alarm that is
no longer needed is marked dead (O(1)) and dropped when it reaches the top.

Waits end in order nearly always (round trips with the same `within`), so dead alarms reach
the top soon: `at` drops the dead ones there, keeping the heap about as big as the number of
waits going on, and the task wakes about once per deadline's length, not once per wait.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import anyio


class Alarm:
    """One deadline: `fire()` is called when it passes, unless `cancel()` came first."""

    __slots__ = ("deadline", "fire")

    def __init__(self, deadline: float, fire: Callable[[], Any] | None) -> None:
        self.deadline = deadline
        self.fire = fire

    def cancel(self) -> None:
        self.fire = None


class Alarms:
    """Many deadlines, one task (`run`, started by whoever owns the task group)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = 0
        self._wake: anyio.Event | None = None
        self._until = float("inf")  # what the task sleeps until

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, deadline: float, fire: Callable[[], Any]) -> Alarm:
        """Call `fire()` (from the alarms' task; it must not block) once `deadline` (in
        anyio.current_time()'s clock) has passed."""
        heap = self._heap
        while heap and heap[0][2].fire is None:
            heapq.heappop(heap)
        alarm = Alarm(deadline, fire)
        self._seq += 1
        heapq.heappush(heap, (deadline, self._seq, alarm))
        if deadline < self._until and self._wake is not None:
            self._wake.set()  # due before what the task sleeps until
        return alarm

    async def run(self) -> None:
        heap = self._heap
        while True:
            self._wake = anyio.Event()
            if heap:
                self._until = heap[0][0]
                with anyio.move_on_after(self._until - anyio.current_time()):
                    await self._wake.wait()
            else:
                self._until = float("inf")
                await self._wake.wait()
            now = anyio.current_time()
            while heap and (heap[0][0] <= now or heap[0][2].fire is None):
                alarm = heapq.heappop(heap)[2]
                fire = alarm.fire
                if fire is not None:
                    alarm.fire = None
                    fire()
