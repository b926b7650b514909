"""Keep-alive pings for many connections with one task (it knows nothing of evt)."""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from lang.wire.connection import WebSocket


class KeepAlive:
    """Keep-alive for many connections with one task: a heap of when each is next due; a
    due connection gets a short task for its ping round. The heap holds weak references: a
    connection that closed is freed at once, not when its next ping would have been due."""

    def __init__(self, spawn: Callable[..., Any]) -> None:
        self._spawn = spawn
        self._heap: list[tuple[float, int, weakref.ref[WebSocket]]] = []
        self._seq = 0
        self._wake: anyio.Event | None = None

    def add(self, ws: WebSocket) -> None:
        if ws.limits.ping_interval <= 0 or ws.closed is not None:
            return
        due = anyio.current_time() + ws.limits.ping_interval
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, weakref.ref(ws)))
        if self._wake is not None and self._heap[0][1] == self._seq:
            self._wake.set()  # it is due before what the task sleeps for

    async def run(self) -> None:
        while True:
            self._wake = anyio.Event()
            if self._heap:
                with anyio.move_on_after(self._heap[0][0] - anyio.current_time()):
                    await self._wake.wait()
            else:
                await self._wake.wait()
            now = anyio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, ref = heapq.heappop(self._heap)
                ws = ref()
                if ws is not None and ws.closed is None:
                    self._spawn(self._round, ws)

    async def _round(self, ws: WebSocket) -> None:
        if await ws.ping_round():
            self.add(ws)
