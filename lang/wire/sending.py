"""The sending half of a WebSocket connection: frames made in order, written at once when
nothing else is writing and the transport need not wait, queued behind the writer otherwise,
and the replies of one read written together (it knows nothing of evt)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import anyio
from wsproto.events import BytesMessage, Ping, TextMessage

from lang.wire.fastframe import frame as plain_frame
from lang.wire.frames import BATCH_LIMIT, OPEN_STATE, STREAM_ERRORS, message_event

# Connections with broadcast frames queued and no flush yet, by the `spawn` they were given
# (one per running program): one callback of the event loop writes them all out after the
# broadcasts of this loop iteration, rather than a task per connection and message (a
# broadcast to 1,000 peers made 1,000 tasks; a burst of broadcasts from the cluster bus, one
# per message per peer). A callback, not a task: a task cancelled before it ran (the program
# stopping) would leave its entry here and no later broadcast of that program written.
_PENDING: dict[Any, list[Any]] = {}


def _flush_pending(key: Any) -> None:
    for ws in _PENDING.pop(key, ()):
        ws._flushing = False
        if ws._writing or not ws._outbox or ws._broken:
            continue  # a writer is at it: it writes what was queued, in order
        if ws._write_outbox_now():
            continue
        ws._flushing = True  # the transport must be waited for: this connection's own task
        ws.spawn(ws._flush)


class Sending:
    """The sending half of WebSocket (a mixin over its slots: conn, stream, _outbox ...)."""

    __slots__ = ()

    # Every frame is serialised by wsproto and appended to the outbox in one synchronous step,
    # so the outbox holds frames in the order wsproto made them (compression depends on it);
    # whoever holds the lock writes the outbox out in that order.

    async def send(self, data: str | bytes, batch: bool = False) -> None:
        """Send one message (str: text frame, bytes: binary). Raises ConnectionError when the
        connection is not open; waits while the peer is slow. With `batch` (a reply from a
        handler running inside this connection's reader) a small frame is only queued: the
        reader writes what the handlers of one read queued in one go, when it has processed
        that read."""
        frame = self.send_nowait(data, batch)
        if frame is not None:
            await self.send_frame(frame)

    def send_nowait(self, data: str | bytes, batch: bool = False) -> bytes | None:
        """`send`'s part that does not wait, for a caller that saves a coroutine where it can:
        None when the message is sent (or queued, with `batch`); otherwise its frame, which
        the caller must then give to `send_frame`, at once. Raises as `send` does."""
        if self.closed is not None or self.conn.state is not OPEN_STATE:
            raise ConnectionError("not connected")
        if self.on_frame is not None:
            self.on_frame(">", "text" if type(data) is str else "binary", data)
        if self.plain:
            frame = plain_frame(data, self.client)
        else:
            frame = self.conn.send(TextMessage(data=data) if type(data) is str
                                   else BytesMessage(data=data))
        if batch and self._out_bytes + len(frame) <= BATCH_LIMIT:
            outbox = self._outbox
            if outbox is None:
                outbox = self._outbox = deque()
            outbox.append(frame)
            self._out_bytes += len(frame)
            return None
        direct = self._direct
        if direct is not None and not self._writing and not self._outbox:
            # the common case: nobody else writes, and the write does not have to wait
            try:
                if direct(frame):
                    return None
            except STREAM_ERRORS:
                self._outbox = None
                self._out_bytes = 0
                self._broken = True
                raise ConnectionError("connection lost") from None
        return frame

    def send_queued(self, data: str | bytes) -> None:
        """send_nowait for a caller that cannot wait at all (a reply made in the read's own
        callback, lang.wire.connection `_early`): a frame not written at once is queued,
        whatever its size, in order; that caller sees the outbox written. Raises as send."""
        frame = self.send_nowait(data, True)
        if frame is not None:
            self._queue().append(frame)
            self._out_bytes += len(frame)

    def _write_now(self, frame: bytes) -> bool:
        """Write a frame at once if nothing else is writing and the transport need not
        wait; False (nothing written) otherwise, or when the stream is gone."""
        direct = self._direct
        if direct is None or self._writing or self._outbox or self._broken:
            return False
        try:
            return direct(frame)
        except STREAM_ERRORS:
            self._outbox = None
            self._out_bytes = 0
            self._broken = True
            return False

    async def send_frame(self, frame: bytes) -> None:
        """Write a frame send_nowait gave back, in order after what others are writing, and
        waiting for the drain."""
        if self._writing or self._outbox:
            if not await self._push(frame):
                raise ConnectionError("connection lost")
            return
        self._writing = True  # nobody else writes: write it, waiting for the drain
        try:
            await self.stream.send(frame)
            outbox = self._outbox
            direct = self._direct
            while outbox:  # frames queued (broadcast) while we were writing
                data = outbox.popleft()
                self._out_bytes -= len(data)
                if direct is None or not direct(data):
                    await self.stream.send(data)
        except STREAM_ERRORS:
            self._outbox = None
            self._out_bytes = 0
            self._broken = True
            raise ConnectionError("connection lost") from None
        finally:
            self._writing = False
            if self._writers or self._outbox:
                self._wake()
            else:
                self._outbox = None

    def enqueue(self, data: str | bytes) -> bool:
        """Queue a message without waiting (broadcast). False when more than out_limit bytes
        already wait for this peer: it cannot keep up."""
        if self.closed is not None or self.conn.state is not OPEN_STATE:
            return True
        if self._out_bytes > self.out_limit:
            return False
        if self.on_frame is not None:
            self.on_frame(">", "text" if type(data) is str else "binary", data)
        frame = plain_frame(data, self.client) if self.plain else self.conn.send(message_event(data))
        self._queue().append(frame)
        self._out_bytes += len(frame)
        spawn = self.spawn
        if not self._flushing and spawn is not None:
            self._flushing = True
            pending = _PENDING.get(spawn)
            if pending is None:
                pending = _PENDING[spawn] = []
                asyncio.get_running_loop().call_soon(_flush_pending, spawn)
            pending.append(self)
        return True

    async def _flush(self) -> None:
        try:
            await self._push(b"")
        finally:
            self._flushing = False

    async def _push(self, frame: bytes) -> bool:
        """Append a frame and see the outbox written out (by us, or by the task already
        writing, which we then wait for). False when the stream is gone."""
        outbox = self._queue()
        if frame:
            outbox.append(frame)
            self._out_bytes += len(frame)
        if self._writing:
            done = anyio.Event()
            self._writers.append(done)
            await done.wait()
            return not self._broken
        await self._write_out(outbox, coalesce=False)
        return not self._broken

    def _write_outbox_now(self) -> bool:
        """The outbox written without a coroutine, coalesced, when nobody else writes or
        waits to and the transport takes it at once (True also when the stream broke: what
        waited is dropped, as _write_out drops it). False: nothing written, a writer must."""
        outbox = self._outbox
        direct = self._direct
        if direct is None or self._writing or self._writers or self._broken or not outbox:
            return False
        data = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        try:
            written = direct(data)
        except STREAM_ERRORS:
            outbox.clear()
            self._outbox = None
            self._out_bytes = 0
            self._broken = True
            return True  # as _write_out: a broken stream drops what waits
        if not written:
            return False
        self._outbox = None
        self._out_bytes -= len(data)
        return True

    async def _write_batch(self) -> None:
        """Write the replies queued while one read was processed, coalesced."""
        outbox = self._outbox
        assert outbox is not None
        await self._write_out(outbox, coalesce=True)

    async def _write_out(self, outbox: deque[bytes], coalesce: bool) -> None:
        """Be the one writer until the outbox is empty; a broken stream drops what waits."""
        self._writing = True
        try:
            while outbox:
                if coalesce and len(outbox) > 1:
                    data = b"".join(outbox)
                    outbox.clear()
                else:
                    data = outbox.popleft()
                self._out_bytes -= len(data)
                direct = self._direct
                if direct is None or not direct(data):
                    await self.stream.send(data)
        except STREAM_ERRORS:
            outbox.clear()
            self._out_bytes = 0
            self._broken = True
        finally:
            self._writing = False
            self._wake()
            if not self._outbox:
                self._outbox = None

    def _queue(self) -> deque[bytes]:
        if self._outbox is None:
            self._outbox = deque()
        return self._outbox

    def _wake(self) -> None:
        """The writer is done: wake those who waited for it; if frames are left (queued while
        the writer was cancelled), the first of them writes them."""
        writers, self._writers = self._writers, []
        for w in writers:
            w.set()
        if self._outbox and not self._flushing and self.spawn is not None and not self._broken:
            self._flushing = True
            self.spawn(self._flush)

    async def ping(self, payload: bytes = b"") -> None:
        if self.conn.state is OPEN_STATE:
            await self._push(self.conn.send(Ping(payload=payload)))
