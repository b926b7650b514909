"""Sources: the events of one source (a connection, a peer, a timer, stdin, a watched
variable, the project) run one at a time, in order; different sources run concurrently."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.from_thread
import anyio.lowlevel

from lang.runtime import stdio as io_
from lang.runtime.host import Host


class Source:
    """Serial execution of one source's events: jobs run one at a time, in order."""

    __slots__ = ("busy", "queue", "rt")

    def __init__(self, rt: Host) -> None:
        self.rt = rt
        # made when needed: an idle connection should not hold an empty deque
        self.queue: deque[Callable[[], Awaitable[None]]] | None = None
        self.busy = False

    def post(self, job: Callable[[], Awaitable[None]]) -> None:
        rt = self.rt
        if rt.shutting_down or rt.stopping:
            # the program is ending: what is cancelled now must not start new work, or two
            # sources feeding each other (`on change a { b = b + 1 }` and the other way
            # round), each job a fresh task, would keep the cancelled task group from ending
            return
        if self.queue is None:
            self.queue = deque()
        self.queue.append(job)
        rt.hold()
        if not self.busy:
            self.busy = True
            rt.spawn(self._drain)

    async def _drain(self) -> None:
        rt = self.rt
        queue = self.queue
        assert queue is not None
        deadline = time.monotonic() + 0.02
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                finally:
                    rt.release()
                if io_.owes():  # the job printed into a full buffer: this source waits
                    await io_.settle()
                # a handler that queues work on its own source (`on change v { v = v + 1 }`)
                # must not keep everything else, Ctrl-C included, from running
                if queue and time.monotonic() >= deadline:
                    await anyio.lowlevel.checkpoint()
                    deadline = time.monotonic() + 0.02
        finally:
            self.busy = False
            if not queue:
                self.queue = None
