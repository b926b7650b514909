"""Standard input as one source of `on input` events (SPEC §6, §18's `on input end`): a mixin
of the Runtime, in a module of its own to keep the Runtime's small. A thread reads stdin; a
bounded queue hands the lines over, so stdin is read only as fast as the handlers take it."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from lang.runtime import stdio as io_
from lang.runtime.core import checkpoint

# lines of standard input waiting for their handlers: at most this many reads (64 KiB each)
INPUT_BATCHES = 4


class StandardInput:
    """`_start_input` (uses the Runtime's hold, release, spawn, diag and dispatch)."""

    hold: Any
    release: Any
    spawn: Any
    diag: Any
    dispatch: Any

    def _start_input(self) -> None:
        """Standard input is one source: a thread reads it, a bounded queue (INPUT_BATCHES
        reads of at most 64 KiB) hands the lines over, and the thread waits when the queue
        is full, so stdin is read only as fast as the `on input` handlers take it."""
        self.hold()  # until the last line read is handled
        send, receive = anyio.create_memory_object_stream[list[bytes]](INPUT_BATCHES)
        token = anyio.lowlevel.current_token()
        thread = threading.Thread(target=self._read_input, args=(send, token), daemon=True,
                                  name="evt stdin")
        thread.start()
        self.spawn(self._take_input, receive)

    @staticmethod
    def _read_input(send: Any, token: Any) -> None:
        try:
            for batch in io_.read_lines(0):
                anyio.from_thread.run(send.send, batch, token=token)
        except BaseException:  # the program ended (the queue is closed) or the loop is gone
            pass
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except BaseException:
            pass

    async def _take_input(self, receive: Any) -> None:
        encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
        warned = False
        deadline = time.monotonic() + 0.02
        try:
            async with receive:
                async for batch in receive:
                    for raw in batch:
                        if time.monotonic() >= deadline:  # many short lines: let others run
                            await checkpoint()
                            deadline = time.monotonic() + 0.02
                        if isinstance(raw, io_.Piece) and not warned:
                            warned = True
                            self.diag(f"evt: warning: a line of standard input is longer "
                                      f"than {io_.MAX_LINE} bytes: it is handled in pieces")
                        if raw.endswith(b"\r"):
                            raw = raw[:-1]
                        line = raw.decode(encoding, "replace")
                        await self.dispatch(("input",), line)
            await self.dispatch(("input end",))  # every line handled (SPEC §18)
        finally:
            self.release()
