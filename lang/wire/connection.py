"""WebSocket connections: wsproto (sans-IO) driven over anyio byte streams.

Rules of this module (it knows nothing of evt):
- One reader per connection (`WebSocket.run`) feeds bytes to wsproto and hands each whole
  message to a callback, which it awaits: while the callback waits, nothing more is read, so
  a slow consumer pushes back on the peer through TCP instead of growing a buffer.
- Writes go through one lock per connection (frame order matters, above all with
  compression) and wait while the peer is slow: anyio's stream send waits for the socket
  buffer to drain below its high-water mark.
- Every way a connection ends gives one `Closed(code, reason, clean)`: the close code the
  peer sent (or, when we failed the connection and none came back, our code; or 1006 when the
  connection just dropped), and whether the close handshake completed.
- RFC 6455: pings are answered (§5.5.2); the server closes TCP first after the close
  handshake, a client waits for that (§7.1.1); invalid UTF-8 fails with 1007 (§8.1);
  protocol errors with 1002; a message over the limit with 1009; a keep-alive ping without a
  pong with 1011. Bytes are counted as they arrive, after decompression too, so a compressed
  bomb cannot grow memory.
- Bounds on what a peer can make us hold or spend: the opening request's head
  (lang.http_request: 414, 431); a frame whose header announces more than max_message is
  refused at the header (1009); the frames of one message are counted (max_fragments, then
  1009) and timed (message_timeout, then 1008); after we fail a connection, at most
  FAILED_READ_LIMIT bytes are parsed looking for the peer's close frame.
- Bytes that came in the same read as the opening request are the connection's first.
"""

from __future__ import annotations

import heapq
import math
import re
import ssl
import weakref
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from wsproto import ConnectionType, WSConnection, frame_protocol
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from lang.wire.http_request import BadRequest, RequestHead
from lang.wire.http_request import check as check_request

# uvloop hands over up to 256 KiB per read; asking for less makes anyio split (copy) it
READ_SIZE = 262144
_OPEN = ConnectionState.OPEN  # a module constant: enum attribute lookups cost on hot paths
# replies queued while one read is processed are written together, up to this many bytes
BATCH_LIMIT = 65536
# after we failed a connection, at most this many bytes are parsed looking for the peer's
# close frame; then TCP is dropped (a peer flooding frames costs no more than that)
FAILED_READ_LIMIT = 65536
_STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                  OSError, ssl.SSLError)

CLOSE_NAMES = {
    1000: "OK", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status", 1006: "abnormal closure", 1007: "invalid data",
    1008: "policy violation", 1009: "message too big", 1010: "extension required",
    1011: "internal error", 1012: "service restart", 1013: "try again later",
    1014: "bad gateway", 1015: "TLS failure",
}


# ---------------------------------------------------------------- masking
#
# Unmasking what clients send (and masking what a client sends) is most of the cost of large
# messages. wsaccel (an established C accelerator, used by Autobahn) does it about twice as
# fast as wsproto's pure-Python masker; when it is not installed, wsproto's own is used.

try:
    from wsaccel.xormask import XorMaskerSimple as _CMasker
except ImportError:  # pragma: no cover - the fallback is tested by forcing it off
    _CMasker = None

_PURE_MASKER = frame_protocol.XorMaskerSimple


class _AcceleratedMasker:
    """wsproto's masker interface (`process(data) -> bytearray`) over wsaccel's."""

    __slots__ = ("_masker",)

    def __init__(self, masking_key: bytes) -> None:
        self._masker = _CMasker(bytes(masking_key))

    def process(self, data: bytes | bytearray) -> bytes:
        # bytes, not the bytearray wsproto's masker returns: wsproto copies the payload into
        # bytes right after, which is then free
        return self._masker.process(data)


def use_masking_accelerator(enabled: bool = True) -> bool:
    """Use the C masker when it is installed (the default). Returns whether it is in use."""
    on = enabled and _CMasker is not None
    frame_protocol.XorMaskerSimple = _AcceleratedMasker if on else _PURE_MASKER
    return on


use_masking_accelerator()


class Closed(NamedTuple):
    code: int
    reason: str
    clean: bool


class TransportError(Exception):
    """A connection could not be made or was refused; the message says why, in words."""


@dataclass
class Limits:
    max_message: int = 1024 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    # the frames of one message that say more is to come (FIN clear): more fail with 1009.
    # 0: max(65536, max_message // 64), so that a message of max_message bytes in 64-byte
    # fragments fits (Autobahn's 9.3.1 and 9.4.1 send 4 MiB so: 65536 and an empty last one)
    max_fragments: int = 0
    # a message begun and not finished within this many seconds fails with 1008 (0: never)
    message_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.max_fragments <= 0:
            self.max_fragments = max(65536, self.max_message // 64)


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that never inflates more than `limit` bytes of one message: a frame
    that would is refused with 1009 before the memory is spent."""

    def __init__(self, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self._inflated = 0

    def accept(self, offer: str) -> bool | str | None:
        """The server's answer to one offer. An offer whose parameters wsproto cannot parse
        (`server_max_window_bits=x`) is declined, as RFC 7692 §5 asks; so is any offer after
        the one accepted (the first acceptable offer wins, and the state is that one's)."""
        if self._enabled:
            return None
        flags = (self.client_no_context_takeover, self.server_no_context_takeover)
        try:
            return super().accept(offer)
        except ValueError:
            self.client_no_context_takeover, self.server_no_context_takeover = flags
            return None

    def finalize(self, offer: str) -> None:
        """The client takes the server's answer; one it cannot parse fails the handshake
        (RFC 7692 §5: the client must fail the connection)."""
        try:
            super().finalize(offer)
        except ValueError:
            raise RemoteProtocolError(f"bad permessage-deflate parameters {offer!r}",
                                      event_hint=RejectConnection()) from None

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        room = self.limit - self._inflated
        try:
            out = self._decompressor.decompress(bytes(data), room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.limit or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        result = super().frame_inbound_complete(proto, fin)
        if isinstance(result, bytes | bytearray):
            self._inflated += len(result)
            if self._inflated > self.limit:
                return CloseReason.MESSAGE_TOO_BIG
        if fin:
            self._inflated = 0
        return result


def address_text(stream: anyio.abc.ByteStream, otherwise: str) -> str:
    """The remote end of a stream (TLS or not) as "HOST:PORT" ("[::1]:PORT" for IPv6)."""
    try:
        address = stream.extra(anyio.abc.SocketAttribute.remote_address)
    except Exception:  # not a socket (a test's memory stream), or already gone
        return otherwise
    if not isinstance(address, tuple):
        return str(address)
    host = address[0]
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


def close_text(code: int, reason: str) -> str:
    name = CLOSE_NAMES.get(code, "")
    out = f"{code} ({name})" if name else str(code)
    return f"{out} {reason!r}" if reason else out


@dataclass(slots=True)
class Peer:
    """Who is on the other end, as the handshake told us."""

    remote: str = ""
    path: str = "/"
    query: str = ""
    # as the handshake had them (wsproto's bytes, or str): decoded only when asked for, so
    # an idle connection does not hold a decoded copy
    headers: list[tuple[bytes | str, bytes | str]] = field(default_factory=list)
    subprotocol: str | None = None


class WebSocket:
    """One open WebSocket connection, either role."""

    __slots__ = ("__weakref__", "_after_failure", "_broken", "_deadline", "_decoder", "_done",
                 "_failed", "_flushing", "_frames", "_message_deadline", "_out_bytes",
                 "_outbox", "_parts", "_pong", "_reader_id", "_reading", "_received", "_size",
                 "_writers", "_writing", "client", "closed", "conn", "late_bytes", "limits",
                 "messages_in", "on_failure", "on_frame", "out_limit", "pauses", "peer",
                 "spawn", "stream", "unpause")

    def __init__(self, stream: anyio.abc.ByteStream, conn: Connection, *, client: bool,
                 limits: Limits, peer: Peer,
                 on_failure: Callable[[str], None] | None = None,
                 on_frame: Callable[[str, str, Any], None] | None = None) -> None:
        self.stream = stream
        self.conn = conn
        self.client = client
        self.limits = limits
        self.peer = peer
        self.on_failure = on_failure  # told why we fail a connection (oversize, bad data...)
        self.on_frame = on_frame  # --trace: ("<" or ">", kind, payload)
        self.closed: Closed | None = None
        # writing: one task writes at a time, the outbox in order (see "sending" below)
        self._writing = False
        self._writers: list[anyio.Event] = []  # tasks waiting for the writer
        self._broken = False
        self._outbox: deque[bytes] | None = None  # made when writes queue up
        self._out_bytes = 0
        self._flushing = False
        self.out_limit = max(1024 * 1024, limits.max_message)
        self.spawn: Callable[..., Any] | None = None  # starts a task in the connection's group
        self._done: anyio.Event | None = None  # made when someone waits: memory per idle conn
        self._parts: list[Any] = []  # the fragments of a message being received
        self._size = 0
        self._frames = 0  # the frames of that message so far
        self._message_deadline: float | None = None  # when that message must be finished
        # wsproto's frame decoder, whose header of a frame still arriving says how long the
        # frame is: a frame announcing more than max_message is refused at its header
        self._decoder: Any = getattr(getattr(conn, "_proto", None), "_frame_decoder", None)
        self._received: tuple[int, str] | None = None
        self._failed: tuple[int, str] | None = None
        self._after_failure = 0  # bytes read since we failed the connection
        self._pong: anyio.Event | None = None
        self._reading = False
        self._deadline: float | None = None
        self._reader_id: int | None = None
        self.messages_in = 0
        # Backpressure is the message callback's: it holds the reader back while its queue
        # is full. While it does, it sets `unpause` (what lets the reader go on) and counts
        # the pause in `pauses`: keep-alive does not blame the peer for a pong we did not
        # read, and close() lets the reader go on to read the peer's close frame. The
        # callback counts in `late_bytes` what it took without pausing after our close frame.
        self.unpause: Callable[[], None] | None = None
        self.pauses = 0
        self.late_bytes = 0

    # ------------------------------------------------------------ state

    @property
    def open(self) -> bool:
        return self.closed is None and self.conn.state is _OPEN

    # ------------------------------------------------------------ sending
    #
    # Every frame is serialised by wsproto and appended to the outbox in one synchronous step,
    # so the outbox holds frames in the order wsproto made them (compression depends on it);
    # whoever holds the lock writes the outbox out in that order.

    async def send(self, data: str | bytes, batch: bool = False) -> None:
        """Send one message (str: text frame, bytes: binary). Raises ConnectionError when the
        connection is not open; waits while the peer is slow. With `batch` (a reply from a
        handler running inside this connection's reader) a small frame is only queued: the
        reader writes what the handlers of one read queued in one go, when it has processed
        that read."""
        if self.closed is not None or self.conn.state is not _OPEN:
            raise ConnectionError("not connected")
        if self.on_frame is not None:
            self.on_frame(">", "text" if type(data) is str else "binary", data)
        frame = self.conn.send(TextMessage(data=data) if type(data) is str
                               else BytesMessage(data=data))
        if batch and self._out_bytes + len(frame) <= BATCH_LIMIT:
            self._queue().append(frame)
            self._out_bytes += len(frame)
            return
        if self._writing or self._outbox:
            if not await self._push(frame):
                raise ConnectionError("connection lost")
            return
        self._writing = True  # the common case: nobody else writes, write it now
        try:
            await self.stream.send(frame)
            outbox = self._outbox
            while outbox:  # frames queued (broadcast) while we were writing
                data = outbox.popleft()
                self._out_bytes -= len(data)
                await self.stream.send(data)
        except _STREAM_ERRORS:
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
        if self.closed is not None or self.conn.state is not _OPEN:
            return True
        if self._out_bytes > self.out_limit:
            return False
        if self.on_frame is not None:
            self.on_frame(">", "text" if type(data) is str else "binary", data)
        frame = self.conn.send(_message(data))
        self._queue().append(frame)
        self._out_bytes += len(frame)
        if not self._flushing and self.spawn is not None:
            self._flushing = True
            self.spawn(self._flush)
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
                await self.stream.send(data)
        except _STREAM_ERRORS:
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
        if self.conn.state is _OPEN:
            await self._push(self.conn.send(Ping(payload=payload)))

    # ------------------------------------------------------------ receiving

    async def run(self, on_message: Callable[[str | bytes], Awaitable[None]]) -> Closed:
        """Read until the connection ends, awaiting on_message for each whole message.
        Returns how it ended."""
        self._reading = True
        self._reader_id = anyio.get_current_task().id
        try:
            # frames that came in the same read as the handshake are already in wsproto
            await self._events(on_message)
            if self._outbox and not self._writing:
                await self._write_batch()
            receive = self.stream.receive
            while self.closed is None:
                if self._deadline is None and self._message_deadline is None:
                    try:  # the common case, without a frame of its own
                        data = await receive(READ_SIZE)
                    except _STREAM_ERRORS:
                        data = None
                else:
                    data = await self._receive()
                    if data and self._failed is not None:
                        self._after_failure += len(data)
                        if self._after_failure > FAILED_READ_LIMIT:
                            # what a failed peer sends is not processed (§7.1.7): past this,
                            # it is not parsed either, looking for its close frame
                            await self._linger()
                            await self._finish(clean=False)
                            break
                if data is None:
                    await self._finish(clean=False)
                    break
                if not data:  # the message being received is late
                    await self._fail_message(1008, "message not finished within "
                                             f"{_seconds(self.limits.message_timeout)}")
                    continue
                await self._feed(data, on_message)
                if self._outbox and not self._writing:
                    await self._write_batch()
        finally:
            self._reading = False
        assert self.closed is not None
        return self.closed

    async def _receive(self) -> bytes | None:
        """One read within the close deadline (None when it passed, or the stream ended), or
        else within the deadline of the message being received (b"" when that passed)."""
        try:
            if self._deadline is None:
                if self._message_deadline is None:
                    return await self.stream.receive(READ_SIZE)
                with anyio.move_on_after(self._message_deadline - anyio.current_time()):
                    return await self.stream.receive(READ_SIZE)
                return b""
            with anyio.move_on_after(self._deadline - anyio.current_time()):
                return await self.stream.receive(READ_SIZE)
            return None
        except _STREAM_ERRORS:
            return None

    async def _fail_message(self, code: int, reason: str) -> None:
        """Fail the connection for the message being received, which is dropped."""
        self._parts = []
        self._message_deadline = None
        await self.fail(code, reason)

    async def _feed(self, data: bytes, on_message: Callable[[Any], Awaitable[None]]) -> None:
        try:
            self.conn.receive_data(data)
        except LocalProtocolError:
            return
        await self._events(on_message)

    async def _events(self, on_message: Callable[[Any], Awaitable[None]]) -> None:
        conn = self.conn
        for ev in conn.events():
            t = type(ev)
            if t is TextMessage or t is BytesMessage:
                chunk = ev.data
                if conn.state is not _OPEN and (self._failed is not None
                                                or self.closed is not None):
                    continue  # we failed the connection: nothing more is processed (§7.1.7)
                # after our close frame, what the peer sent before it saw it is still
                # delivered: RFC 6455 §5.5.1 ends sending data, not receiving it
                size = len(chunk) if t is BytesMessage or chunk.isascii() \
                    else len(chunk.encode("utf-8"))
                self._size += size
                if self._size > self.limits.max_message:
                    await self._fail_message(1009, f"message over {self.limits.max_message} "
                                             "bytes")
                    continue
                if not ev.message_finished:
                    if chunk:  # empty fragments are counted, not kept
                        self._parts.append(chunk)
                    if ev.frame_finished:
                        self._frames += 1
                        if self._frames > self.limits.max_fragments:
                            await self._fail_message(1009, "message in more than "
                                                     f"{self.limits.max_fragments} fragments")
                            continue
                    if self._message_deadline is None and self.limits.message_timeout > 0:
                        self._message_deadline = anyio.current_time() \
                            + self.limits.message_timeout
                    continue
                if self._parts:
                    if chunk:
                        self._parts.append(chunk)
                    chunk = ("" if t is TextMessage else b"").join(self._parts)
                    self._parts = []
                elif t is BytesMessage and type(chunk) is not bytes:
                    chunk = bytes(chunk)
                self._size = 0
                self._frames = 0
                self._message_deadline = None
                self.messages_in += 1
                if self.on_frame is not None:
                    self.on_frame("<", "text" if t is TextMessage else "binary", chunk)
                await on_message(chunk)
            elif t is Ping:
                if conn.state is _OPEN:
                    await self._push(conn.send(ev.response()))
            elif t is Pong:
                if self._pong is not None:
                    self._pong.set()
            elif t is CloseConnection:
                await self._on_close(ev)
                if self.closed is not None:
                    return
        header = self._decoder.header if self._decoder is not None else None
        if header is not None and self._failed is None and conn.state is _OPEN:
            await self._check_header(header)

    async def _check_header(self, header: Any) -> None:
        """A data frame whose header has come and whose payload has not (all) come: refused
        now if the message will be over max_message, not when the bytes have come (a peer
        that announces a huge frame and sends nothing would hold the connection until the
        keep-alive gives up). A compressed frame inflates to at least about its own length
        (zlib's worst case adds about 1/1000): it is refused when over that much more."""
        if header.opcode.iscontrol():
            return
        limit = self.limits.max_message
        if header.rsv.rsv1 or self._inflating():
            if header.payload_len > limit + (limit >> 9) + 64:
                await self._fail_message(1009, f"message over {limit} bytes")
        elif self._size + header.payload_len - self._decoder.payload_consumed > limit:
            await self._fail_message(1009, f"message over {limit} bytes")

    def _inflating(self) -> bool:
        """Whether the message being received is compressed (the continuation frames of a
        compressed message do not have the bit set)."""
        return any(getattr(e, "_inbound_compressed", False) for e in self._decoder.extensions)

    async def _on_close(self, ev: CloseConnection) -> None:
        state = self.conn.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer closes: answer, then end TCP
            self._received = (int(ev.code), ev.reason or "")
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
            reason = _violation_words(code, ev.reason or CLOSE_NAMES[code])
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
            except (*_STREAM_ERRORS, NotImplementedError, RuntimeError):
                pass

    async def _drop(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.limits.close_timeout):
            try:
                await self.stream.aclose()
            except _STREAM_ERRORS:
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
        if self.conn.state is _OPEN:
            if self.on_frame is not None:
                self.on_frame(">", "close", close_text(code, reason))
            try:
                frame = self.conn.send(CloseConnection(code=code, reason=reason))
            except LocalProtocolError:
                frame = b""
            if self.unpause is not None:
                self.unpause()  # a reader held back by a full queue must read the answer
            if frame:
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
                await self.run(_discard)
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

    async def keepalive(self) -> None:
        """Ping every ping_interval; no pong within ping_timeout fails the connection with
        1011. Returns when the connection ends. (Many connections share one KeepAlive
        instead: a task per idle connection costs memory.)"""
        interval = self.limits.ping_interval
        if interval <= 0:
            return
        while self.closed is None:
            with anyio.move_on_after(interval):
                await self._wait_done()
            if not await self.ping_round():
                return

    async def ping_round(self) -> bool:
        """One keep-alive ping. False when the connection is over: closed, or failed with
        1011 because no pong came within ping_timeout (the ping write counts: a peer that
        stopped reading blocks it). While the message callback holds the reader back (our
        own backpressure) the pong cannot be read: a round whose ping went out but during
        which reading paused does not count against the peer."""
        if self.closed is not None or self.conn.state is not _OPEN:
            return False
        pauses = self.pauses
        written = False
        self._pong = anyio.Event()
        with anyio.move_on_after(self.limits.ping_timeout) as scope:
            await self.ping(b"evt")
            written = True
            await self._pong.wait()
        self._pong = None
        if scope.cancelled_caught and self.closed is None:
            if written and (self.unpause is not None or self.pauses != pauses):
                return self.conn.state is _OPEN  # our reading paused: try again later
            await self.fail(1011, f"no pong within {_seconds(self.limits.ping_timeout)}")
            return False
        return self.closed is None


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


async def _discard(message: Any) -> None:
    return None


def _message(data: str | bytes) -> Any:
    if type(data) is str:
        return TextMessage(data=data)
    return BytesMessage(data=data)


def _violation_words(code: int, reason: str) -> str:
    """wsproto's words for what the peer did wrong, in evt's where they are Python's."""
    if code == 1007:
        where = re.search(r"in position (\d+)", reason)
        at = f" at byte {where[1]}" if where else ""
        if reason.startswith("Error decoding CLOSE reason"):
            return f"close reason not valid UTF-8{at}"
        if "codec can't decode" in reason:
            return "text message not valid UTF-8"
    return reason


def _seconds(x: float) -> str:
    return f"{int(x)}s" if float(x).is_integer() else f"{x:g}s"


# ---------------------------------------------------------------- client role


@dataclass
class ClientOptions:
    url: str
    port: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    subprotocols: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    compression: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    limits: Limits = field(default_factory=Limits)


def client_tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TransportError(f"cannot load ca_file '{ca_file}': {e}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(opts: ClientOptions, **hooks: Any) -> WebSocket:
    """TCP, TLS and the opening handshake, all within connect_timeout. Raises
    TransportError with the cause in words."""
    parts = urlsplit(opts.url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = opts.port or parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ctx = client_tls_context(opts.verify_tls, opts.ca_file) if secure else None
    timeout = opts.connect_timeout if opts.connect_timeout > 0 else math.inf
    try:
        with anyio.fail_after(timeout):
            try:
                stream = await anyio.connect_tcp(host, port, ssl_context=ctx, tls=secure,
                                                 tls_hostname=host if secure else None,
                                                 tls_standard_compatible=False)
            except ssl.SSLCertVerificationError as e:
                raise TransportError(f"TLS certificate not trusted: {e.verify_message}") from None
            except ssl.SSLError as e:
                raise TransportError(f"TLS failed: {e.reason or e}") from None
            except OSError as e:
                raise TransportError(_os_error(e)) from None
            except anyio.EndOfStream:  # only the TLS handshake reads: the server hung up
                raise TransportError("TLS failed: the server closed the connection during "
                                     "the TLS handshake") from None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise TransportError("TLS failed: the connection was reset during the TLS "
                                     "handshake") from None
            try:
                return await _client_handshake(stream, opts, host, port, secure, target, **hooks)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _quiet_close(stream)
                raise
    except TimeoutError:
        raise TransportError(f"connect timed out after {_seconds(opts.connect_timeout)}"
                             ) from None


async def _client_handshake(stream: anyio.abc.ByteStream, opts: ClientOptions, host: str,
                            port: int, secure: bool, target: str, **hooks: Any) -> WebSocket:
    ws = WSConnection(ConnectionType.CLIENT)
    default_port = 443 if secure else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    extensions = [BoundedDeflate(opts.limits.max_message)] if opts.compression else []
    extra = [(k, str(v).strip(" \t")) for k, v in opts.headers.items()]
    request = Request(host=host_header, target=target, subprotocols=list(opts.subprotocols),
                      extensions=extensions, extra_headers=extra)
    try:
        data = ws.send(request)
    except (h11.LocalProtocolError, LocalProtocolError, UnicodeError) as e:
        # h11 refused a header or the target (a computed url with a space, say)
        raise TransportError(f"cannot make the handshake request: {e}") from None
    try:
        await stream.send(data)
    except _STREAM_ERRORS as e:
        raise TransportError(f"connection lost during the handshake ({e})") from None
    status: int | None = None
    body = b""
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except _STREAM_ERRORS:
            if status is not None:
                break
            hint = "" if secure else "; is it a wss:// server?"
            raise TransportError("the server closed the connection during the handshake"
                                 + hint) from None
        if not secure and status is None and data[:1] == b"\x15" and data[1:2] == b"\x03":
            # a TLS alert record: a TLS server read our plain HTTP request
            raise TransportError("the server speaks TLS: use a wss:// url")
        try:
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, AcceptConnection):
                    conn = ws.connection
                    assert conn is not None
                    # the address connected to (localhost is 127.0.0.1 or ::1)
                    peer = Peer(remote=address_text(stream, f"{host}:{port}"),
                                path=target.split("?")[0],
                                subprotocol=ev.subprotocol,
                                headers=list(ev.extra_headers))
                    return WebSocket(stream, conn, client=True, limits=opts.limits, peer=peer,
                                     **hooks)
                if isinstance(ev, RejectConnection):
                    status = ev.status_code
                    if not ev.has_body:
                        raise TransportError(_rejected(status, b""))
                elif isinstance(ev, RejectData):
                    body += ev.data
                    if ev.body_finished or len(body) > 4096:
                        raise TransportError(_rejected(status or 0, body))
        except RemoteProtocolError as e:
            raise TransportError(f"bad handshake response: {e}") from None
        if status is not None and len(body) > 4096:
            break
    raise TransportError(_rejected(status or 0, body))


def _rejected(status: int, body: bytes) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    text = f"handshake refused: HTTP {status}" + (f" {phrase}" if phrase else "")
    snippet = body.decode("utf-8", "replace").strip().splitlines()
    if snippet and snippet[0] and len(snippet[0]) < 100:
        text += f": {snippet[0]}"
    return text


def _os_error(e: OSError) -> str:
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    import socket

    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(cause, TimeoutError):
        return "connect timed out"
    return cause.strerror or str(cause) or type(cause).__name__


async def _quiet_close(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.aclose()
        except _STREAM_ERRORS:
            pass


# ---------------------------------------------------------------- server role


@dataclass
class ServerOptions:
    path: str | None = None
    origins: list[str | None] | None = None
    subprotocols: list[str] = field(default_factory=list)
    handshake_timeout: float = 10.0
    compression: bool = False
    limits: Limits = field(default_factory=Limits)


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def accept(stream: anyio.abc.ByteStream, opts: ServerOptions, remote: str,
                 admit: Callable[[], str | None] | None = None, **hooks: Any) -> WebSocket:
    """The server side of the opening handshake, within handshake_timeout. Refusals are
    answered with an HTTP response and raise Rejected; a client that stalls or speaks
    something else raises TransportError. `admit` may refuse with 503 (its reason). The
    request head is bounded (lang.http_request) whatever the reads; what came after it in
    the same reads is the client's first WebSocket bytes, kept for the connection."""
    ws = WSConnection(ConnectionType.SERVER)
    head = RequestHead()
    timeout = opts.handshake_timeout if opts.handshake_timeout > 0 else math.inf
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    data = await stream.receive(READ_SIZE)
                except _STREAM_ERRORS:
                    raise TransportError("the client left during the handshake") from None
                got = _read_request(ws, head, data)
                del data  # a refusal lingers a moment: it holds no read buffer
                if got is None:
                    continue
                if isinstance(got, Request):
                    return await _answer(stream, ws, got, opts, remote, admit, head.rest,
                                         **hooks)
                status, why, headers = got
                await refuse(stream, status, why, headers)
                raise Rejected(status, why)
    except TimeoutError:
        raise TransportError(f"handshake not finished within "
                             f"{_seconds(opts.handshake_timeout)}") from None


def _read_request(ws: WSConnection, head: RequestHead, data: bytes
                  ) -> Request | tuple[int, str, tuple[tuple[str, str], ...]] | None:
    """One read of the request: None while its head is incomplete, then the Request, or
    the refusal (status, why, headers). (No exception leaves here: its traceback would keep
    the read's buffers alive while the refusal lingers.)"""
    try:
        if not head.feed(data):
            return None
        check_request(head.head)
    except BadRequest as e:
        head.forget()
        return e.status, f"bad request: {e.reason}" if e.status == 400 else e.reason, e.headers
    try:
        ws.receive_data(head.head)
        events = list(ws.events())
    except RemoteProtocolError as e:
        status, headers = 400, ()
        if isinstance(e.event_hint, RejectConnection):
            status = e.event_hint.status_code
            headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                            for k, v in e.event_hint.headers if k.lower() != b"content-length")
        return status, f"bad request: {e}", headers
    for ev in events:
        if isinstance(ev, Request):
            return ev
    return 400, "bad request: not a complete HTTP request", ()


async def _answer(stream: anyio.abc.ByteStream, ws: WSConnection, req: Request,
                  opts: ServerOptions, remote: str, admit: Callable[[], str | None] | None,
                  rest: bytes, **hooks: Any) -> WebSocket:
    path, _, query = req.target.partition("?")
    # wsproto takes these out of the headers into fields of its own: put them back
    headers: list[tuple[bytes | str, bytes | str]] = [("host", req.host)]
    if req.subprotocols:
        headers.append(("sec-websocket-protocol", ", ".join(req.subprotocols)))
    if req.extensions:
        headers.append(("sec-websocket-extensions",
                        ", ".join(e if isinstance(e, str) else e.name for e in req.extensions)))
    headers += req.extra_headers
    if opts.path is not None and path != opts.path:
        await refuse(stream, 404, f"no WebSocket at {path}")
        raise Rejected(404, f"path {path!r} is not {opts.path!r}")
    if opts.origins is not None:
        origin = header_items(headers).get("origin")
        if origin not in opts.origins:
            await refuse(stream, 403, "origin not allowed")
            raise Rejected(403, f"origin {origin!r} is not allowed" if origin
                           else "no Origin header")
    if admit is not None:
        refusal = admit()
        if refusal:
            await refuse(stream, 503, refusal)
            raise Rejected(503, refusal)
    chosen = next((p for p in opts.subprotocols if p in req.subprotocols), None)
    extensions = []
    if opts.compression and any(e.split(";")[0].strip() == "permessage-deflate"
                                for e in req.extensions):
        extensions = [BoundedDeflate(opts.limits.max_message)]
    try:
        await stream.send(ws.send(AcceptConnection(subprotocol=chosen, extensions=extensions)))
    except _STREAM_ERRORS:
        raise TransportError("the client left during the handshake") from None
    conn = ws.connection
    assert conn is not None
    if rest:
        # bytes that came with the request are WebSocket bytes (a pipelined second request
        # too: after 101 the connection speaks WebSocket); wsproto's server side drops them
        # (h11's trailing data), so the connection gets them here and `run` reads them first
        conn.receive_data(rest)
    peer = Peer(remote=remote, path=path, query=query, headers=headers, subprotocol=chosen)
    return WebSocket(stream, conn, client=False, limits=opts.limits, peer=peer, **hooks)


def http_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole HTTP/1.1 answer with a plain-text body; the connection closes after it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = (text + "\n").encode()
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


async def refuse(stream: anyio.abc.ByteStream, status: int, text: str,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer a refused request and end the connection. What the client still sends is read
    and dropped for a moment first (a half-close, then draining): closing with unread bytes
    would reset the connection, and the client could lose the answer. Bounded (4s at most)
    and shielded: a handshake timeout that passes meanwhile does not make it a drop.
    (Modules are imported beforehand: with every file descriptor in use, an import here
    could not open its file.)"""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(2):
            try:
                await stream.send(http_response(status, text, headers))
            except _STREAM_ERRORS:
                pass
        await _drain_and_close(stream)


async def _drain_and_close(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.send_eof()
            budget = 1024 * 1024
            while budget > 0:
                budget -= len(await stream.receive(65536))
        # TLS cannot half-close; uvloop raises RuntimeError on a reset transport
        except (*_STREAM_ERRORS, NotImplementedError, RuntimeError):
            pass
    await _quiet_close(stream)


def listen_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(f"cannot load certfile/keyfile: {e}") from None
    return ctx


def header_items(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, str]:
    """Handshake headers as a map with lower-case names (repeated headers joined by ', ')."""
    out: dict[str, str] = {}
    for name, value in headers:
        k = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out
