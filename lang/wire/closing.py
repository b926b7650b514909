"""How a WebSocket connection ends: the close handshake in both directions, failing a
connection, lingering for the peer's close frame, and the one Closed every ending gives
(it knows nothing of evt)."""

from __future__ import annotations

import anyio
import anyio.abc
from wsproto.connection import ConnectionState
from wsproto.events import (
    CloseConnection,
)
from wsproto.utilities import LocalProtocolError

from lang.wire.frames import (
    CLOSE_NAMES,
    FAILED_READ_LIMIT,
    OPEN_STATE,
    READ_SIZE,
    STREAM_ERRORS,
    Closed,
    close_text,
    discard,
    violation_words,
)


class Closing:
    """The closing half of WebSocket (a mixin over its slots: conn, stream, closed ...)."""

    __slots__ = ()


    async def _on_close(self, ev: CloseConnection) -> None:
        state = self.conn.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer closes: answer, then end TCP
            self._received = (int(ev.code), ev.reason or "")
            self.closed_by_peer = True
            if self.on_frame is not None:
                self.on_frame("<", "close", close_text(ev.code, ev.reason or ""))
            code = ev.code if ev.code not in (1005, 1006, 1015) else 1000
            try:
                reply = self.conn.send(CloseConnection(code=code, reason=""))
            except LocalProtocolError:
                reply = b""
            if reply:
                # bounded: another task may be stuck writing to a peer that stopped reading,
                # and then our reply waits behind it
                sent = False
                with anyio.move_on_after(self.limits.close_timeout):
                    await self._push(reply)
                    sent = True
                if not sent:
                    await self._finish(clean=False)
                    return
            await self._end_tcp()
        elif state is ConnectionState.CLOSED:  # the peer answered our close
            self._received = (int(ev.code), ev.reason or "")
            if self.on_frame is not None:
                self.on_frame("<", "close", close_text(ev.code, ev.reason or ""))
            await self._end_tcp()
        else:  # wsproto found a protocol violation in what the peer sent
            code = int(ev.code) if ev.code in (1002, 1007, 1009) else 1002
            reason = violation_words(code, ev.reason or CLOSE_NAMES[code])
            if reason == "error in extension":  # wsproto's words for BoundedDeflate's refusal
                reason = (f"message over {self.limits.max_message} bytes" if code == 1009
                          else "bad compressed data")
            # wsproto cannot parse past it, so no close reply could be read: send our close
            # frame and end TCP (RFC 6455 §7.1.7): half-close and drain what the peer still
            # sends, so that closing does not reset the connection before it read our frame
            await self.fail(code, reason)
            await self._linger()
            await self._finish(clean=False)

    async def _end_tcp(self) -> None:
        """After the close handshake: a server closes TCP now; a client waits (a while) for
        the server to do it (RFC 6455 §7.1.1)."""
        if self.client:
            self._deadline = anyio.current_time() + self.limits.close_timeout
            while True:
                data = await self._receive()
                if data is None:
                    break
        await self._finish(clean=True)

    async def _finish(self, clean: bool) -> None:
        if self.closed is not None:
            return
        if self._received is not None:
            code, reason = self._received
        elif self._failed is not None:
            code, reason = self._failed
            clean = False
        else:
            code, reason, clean = 1006, "", False
        self.closed = Closed(code, reason, clean)
        if self._done is not None:
            self._done.set()
        if self._pong is not None:
            self._pong.set()
        # nothing more will be written: frames still queued (for a peer that stopped reading)
        # are dropped, and whoever waits for them to go out is let go
        self._broken = True
        self._outbox = None
        self._out_bytes = 0
        self._wake()
        await self._drop()

    async def _linger(self) -> None:
        """Half-close and drop what the peer still sends, for a moment (at most a second, and
        FAILED_READ_LIMIT * 16 bytes): the peer can read our close frame before TCP ends."""
        with anyio.move_on_after(min(self.limits.close_timeout, 1.0)):
            try:
                await self.stream.send_eof()
                left = FAILED_READ_LIMIT * 16
                while left > 0:
                    left -= len(await self.stream.receive(READ_SIZE))
            # TLS cannot half-close; uvloop raises RuntimeError on a reset transport
            except (*STREAM_ERRORS, NotImplementedError, RuntimeError):
                pass

    async def _drop(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                if self._direct is not None:  # a plain TCP stream's aclose never waits
                    await self.stream.aclose()
                    return
                with anyio.move_on_after(self.limits.close_timeout):  # TLS's may
                    await self.stream.aclose()
            except STREAM_ERRORS:
                pass

    # ------------------------------------------------------------ closing

    async def fail(self, code: int, reason: str, frame_reason: str | None = None) -> None:
        """Fail the connection (RFC 6455 §7.1.7): tell the user why, send a close frame with
        `code` (and `frame_reason`, or the reason), then give the peer close_timeout to answer
        before TCP is dropped."""
        if self._failed is None and self.closed is None:
            self._failed = (code, reason)
            if self.on_failure is not None:
                self.on_failure(f"{reason}; closing with {close_text(code, '')}")
        await self.close(code, (reason if frame_reason is None else frame_reason)[:120])

    async def close(self, code: int = 1000, reason: str = "") -> Closed | None:
        """Start the close handshake (if still open) and wait until the connection ends: the
        peer's close frame, or close_timeout, after which TCP is dropped. Called from inside
        the reader (a message callback), it only sends the close frame and returns None: the
        reader finishes the handshake."""
        if self.closed is not None:
            return self.closed
        if self._deadline is None:
            self._deadline = anyio.current_time() + self.limits.close_timeout
        if self.conn.state is OPEN_STATE:
            if self.on_frame is not None:
                self.on_frame(">", "close", close_text(code, reason))
            try:
                frame = self.conn.send(CloseConnection(code=code, reason=reason))
            except LocalProtocolError:
                frame = b""
            if self.unpause is not None:
                self.unpause()  # a reader held back by a full queue must read the answer
            if frame and not self._write_now(frame):
                with anyio.move_on_after(max(self._deadline - anyio.current_time(), 0)):
                    await self._push(frame)
        if self._reading:
            if anyio.get_current_task().id == self._reader_id:
                return None  # we are the reader: it goes on and finishes the handshake
            with anyio.move_on_after(max(self._deadline - anyio.current_time(), 0) + 0.05):
                await self._wait_done()
            if self.closed is None:
                await self._drop()  # wakes the reader, which records how it ended
                with anyio.move_on_after(1):
                    await self._wait_done()
        else:  # nobody reads (the program is ending): read for the answer ourselves
            with anyio.move_on_after(max(self._deadline - anyio.current_time(), 0)):
                await self.run(discard)
        if self.closed is None:
            await self._finish(clean=False)
        assert self.closed is not None
        return self.closed

    async def _wait_done(self) -> None:
        if self.closed is None:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()

    async def abort(self) -> None:
        """Drop the connection without a close handshake."""
        await self._drop()

    async def wait_closed(self) -> Closed:
        await self._wait_done()
        assert self.closed is not None
        return self.closed

    # ------------------------------------------------------------ keep-alive
