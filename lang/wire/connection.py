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
  (lang.wire.http_request: 414, 431); a frame whose header announces more than max_message is
  refused at the header (1009); the frames of one message are counted (max_fragments, then
  1009) and timed (message_timeout, then 1008); after we fail a connection, at most
  FAILED_READ_LIMIT bytes are parsed looking for the peer's close frame.
- Bytes that came in the same read as the opening request are the connection's first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
from wsproto.connection import Connection
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

from lang.wire.closing import Closing
from lang.wire.direct import direct_reader, direct_writer
from lang.wire.fastframe import FrameParser, wsproto_in_step
from lang.wire.frames import (
    FAILED_READ_LIMIT,
    OPEN_STATE,
    READ_SIZE,
    STREAM_ERRORS,
    Closed,
    Limits,
    seconds_text,
)
from lang.wire.sending import Sending


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


def _round_trip_clock() -> float:
    """The clock of ping round trips: time.monotonic() (not the loop's time(): uvloop's counts
    whole milliseconds), moved on by the running loop's `clock_offset` when it has one (a
    loop whose clock jumps over idle waits, as evt's --virtual-time loop does)."""
    return time.monotonic() + getattr(asyncio._get_running_loop(), "clock_offset", 0.0)


class MessageSink(Protocol):
    """Who takes messages without waiting (WebSocket.sink)."""

    def ready_now(self) -> bool:
        """Whether `take_now` can take the messages of a read now (else the awaited message
        callback gets them, in order, as always). Asked once per read."""

    def take_now(self, message: str | bytes) -> None:
        """One whole message, from the event loop's callback: it must not raise or block."""


class WebSocket(Sending, Closing):
    """One open WebSocket connection, either role."""

    __slots__ = ("__weakref__", "_after_failure", "_broken", "_deadline", "_decoder", "_direct",
                 "_done", "_failed", "_flushing", "_frames", "_message_deadline", "_out_bytes",
                 "_outbox", "_parts", "_pong", "_reader", "_reader_id", "_reading", "_received",
                 "_size", "_writers", "_writing", "client", "closed", "closed_by_peer", "conn",
                 "fast", "late_bytes", "limits", "messages_in", "on_failure", "on_frame",
                 "on_pong", "out_limit", "pauses", "peer", "plain", "sink", "spawn", "stream",
                 "unpause")

    def __init__(self, stream: anyio.abc.ByteStream, conn: Connection, *, client: bool,
                 limits: Limits, peer: Peer,
                 on_failure: Callable[[str], None] | None = None,
                 on_frame: Callable[[str, str, Any], None] | None = None) -> None:
        self.stream = stream
        self._direct = direct_writer(stream)  # a write without a yield (lang.wire.direct)
        self._reader = direct_reader(stream)  # reads that leave reading on (the same)
        # a MessageSink that takes whole messages without waiting: set, they are handed to
        # it from the read itself when it can take them (see "receiving"), not through the
        # reader's task and the awaited message callback
        self.sink: MessageSink | None = None
        self.conn = conn
        self.client = client
        self.limits = limits
        self.peer = peer
        self.on_failure = on_failure  # told why we fail a connection (oversize, bad data...)
        self.on_pong: Callable[[float], None] | None = None  # told each ping's round trip (s)
        self.on_frame = on_frame  # --trace: ("<" or ">", kind, payload)
        self.closed: Closed | None = None
        self.closed_by_peer = False  # the peer's close frame began the close handshake
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
        # The frame fast path (lang.wire.fastframe): with no extension, whole data frames are
        # made without wsproto (`plain`), and received ones are parsed in front of it
        # (`fast`: None until it can start, a FrameParser, or False: never on this one).
        self.plain = wsproto_in_step(conn) is not None
        self.fast: FrameParser | bool | None = None if self.plain else False
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
        return self.closed is None and self.conn.state is OPEN_STATE

    # ------------------------------------------------------------ receiving

    async def run(self, on_message: Callable[[str | bytes], Awaitable[None]]) -> Closed:
        """Read until the connection ends, awaiting on_message for each whole message.
        Returns how it ended."""
        self._reading = True
        self._reader_id = anyio.get_current_task().id
        reader = self._reader
        if reader is not None and self.sink is not None and self._deadline is None:
            reader.early = self._early
        try:
            # frames that came in the same read as the handshake are already in wsproto
            await self._events(on_message)
            if self.fast is None:
                self._start_fast()
            if self._outbox and not self._writing and not self._write_outbox_now():
                await self._write_batch()
            receive = reader.receive if reader is not None else self.stream.receive
            while self.closed is None:
                if self._deadline is None and self._message_deadline is None:
                    try:  # the common case, without a frame of its own
                        data = await receive(READ_SIZE)
                    except STREAM_ERRORS:
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
                                             f"{seconds_text(self.limits.message_timeout)}")
                    continue
                fast = self.fast
                if fast:
                    await self._feed_fast(fast, data, on_message)  # type: ignore[arg-type]
                else:
                    await self._feed(data, on_message)
                if self._outbox and not self._writing and not self._write_outbox_now():
                    await self._write_batch()
        finally:
            self._reading = False
            if reader is not None:
                reader.early = None
        assert self.closed is not None
        return self.closed

    def _early(self, data: bytes) -> bool:
        """A read the protocol offers while the reader waits with everything before it
        taken (lang.wire.direct): when it is nothing but whole simple frames and nothing
        else is going on (no deadline, no failure, no frame half received, nothing queued to
        write, no trace), its messages go to the sink now, as the reader would have handed
        them to the callback, without a trip through the reader's task (the `websockets`
        library resolves a waiting `recv` from its protocol callback the same way); the
        replies the sink queued (send_queued) are written as the reader writes a read's.
        False: the reader takes the read, as always."""
        fast = self.fast
        sink = self.sink
        if not fast or sink is None or self.closed is not None or self._failed is not None \
                or self._writing or self._deadline is not None \
                or self._message_deadline is not None or self._outbox \
                or self.on_frame is not None or not sink.ready_now():
            return False
        messages = fast.whole(data)  # type: ignore[union-attr]
        if messages is None:
            return False
        self.messages_in += len(messages)
        take = sink.take_now
        for message in messages:
            take(message)
        if self._outbox and not self._write_outbox_now():
            self._wake()  # the replies the sink queued: the transport must be waited for
        return True

    async def _receive(self) -> bytes | None:
        """One read within the close deadline (None when it passed, or the stream ended), or
        else within the deadline of the message being received (b"" when that passed)."""
        receive = self._reader.receive if self._reader is not None else self.stream.receive
        try:
            if self._deadline is None:
                if self._message_deadline is None:
                    return await receive(READ_SIZE)
                with anyio.move_on_after(self._message_deadline - anyio.current_time()):
                    return await receive(READ_SIZE)
                return b""
            with anyio.move_on_after(self._deadline - anyio.current_time()):
                return await receive(READ_SIZE)
            return None
        except STREAM_ERRORS:
            return None

    async def _fail_message(self, code: int, reason: str) -> None:
        """Fail the connection for the message being received, which is dropped."""
        self._parts = []
        self._message_deadline = None
        await self.fail(code, reason)

    async def _feed(self, data: bytes, on_message: Callable[[Any], Awaitable[None]]) -> None:
        """A read through wsproto alone (the fast path not running: run picks _feed_fast)."""
        fast = self.fast
        try:
            self.conn.receive_data(data)
        except LocalProtocolError:
            return
        await self._events(on_message)
        if fast is None:
            self._start_fast()

    def _start_fast(self) -> None:
        """Start the fast path once wsproto holds no part of a frame (lang.wire.fastframe)."""
        if self._failed is not None or self.closed is not None:
            return
        step = wsproto_in_step(self.conn)
        if step:
            self.fast = FrameParser(self.client, self.limits.max_message)
        elif step is None:
            self.fast = False

    async def _feed_fast(self, fast: FrameParser, data: bytes,
                         on_message: Callable[[Any], Awaitable[None]]) -> None:
        """A read through the fast path: the whole simple messages it takes are delivered as
        _events delivers wsproto's; the rest goes to wsproto, cut at frame boundaries."""
        conn = self.conn
        while True:
            messages, raw = fast.take(data)
            data = b""
            for message in messages:
                if (self._failed is not None or self.closed is not None) \
                        and conn.state is not OPEN_STATE:
                    continue  # we failed the connection: nothing more is processed
                self.messages_in += 1
                if self.on_frame is not None:
                    self.on_frame("<", "text" if type(message) is str else "binary", message)
                await on_message(message)
            if raw is None:
                break
            try:
                conn.receive_data(raw)
            except LocalProtocolError:
                return
            await self._events(on_message)
            if self.closed is not None:
                return
        # a frame still arriving in the parser is timed as one still arriving in wsproto
        if self._message_deadline is None:
            if fast.receiving and self.limits.message_timeout > 0:
                self._message_deadline = anyio.current_time() + self.limits.message_timeout
        elif not fast.receiving and not fast.fragmented and not self._parts \
                and not self._size:
            self._message_deadline = None

    async def _events(self, on_message: Callable[[Any], Awaitable[None]]) -> None:
        conn = self.conn
        for ev in conn.events():
            t = type(ev)
            if t is TextMessage or t is BytesMessage:
                chunk = ev.data
                if conn.state is not OPEN_STATE and (self._failed is not None
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
                if conn.state is OPEN_STATE:
                    await self._push(conn.send(ev.response()))
            elif t is Pong:
                pong = self._pong  # every ping waiting (keep-alive's, a script's) goes on
                if pong is not None:
                    self._pong = None
                    pong.set()
            elif t is CloseConnection:
                if self.fast:
                    self.fast.stop()  # type: ignore[union-attr]  # (wsproto reads no more)
                await self._on_close(ev)
                if self.closed is not None:
                    return
        header = self._decoder.header if self._decoder is not None else None
        if header is not None and self._failed is None and conn.state is OPEN_STATE:
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

    async def round_trip(self) -> float | None:
        """A ping of the script's (SPEC §15 `ping`): the round trip in seconds, or None when
        the connection is not open or no pong came within ping_timeout. Keep-alive alone
        decides that a silent peer is gone."""
        if self.closed is not None or self.conn.state is not OPEN_STATE:
            return None
        pong = self._pong = self._pong or anyio.Event()
        with anyio.move_on_after(self.limits.ping_timeout):
            sent = _round_trip_clock()
            await self.ping(b"evt")
            await pong.wait()
            if self.closed is None:
                return _round_trip_clock() - sent
        return None

    async def ping_round(self) -> bool:
        """One keep-alive ping. False when the connection is over: closed, or failed with
        1011 because no pong came within ping_timeout (the ping write counts: a peer that
        stopped reading blocks it). While the message callback holds the reader back (our
        own backpressure) the pong cannot be read: a round whose ping went out but during
        which reading paused does not count against the peer."""
        if self.closed is not None or self.conn.state is not OPEN_STATE:
            return False
        pauses = self.pauses
        written = False
        pong = self._pong = self._pong or anyio.Event()
        with anyio.move_on_after(self.limits.ping_timeout) as scope:
            sent = _round_trip_clock()
            await self.ping(b"evt")
            written = True
            await pong.wait()
            if self.on_pong is not None and self.closed is None:
                self.on_pong(_round_trip_clock() - sent)
        if scope.cancelled_caught and self.closed is None:
            if written and (self.unpause is not None or self.pauses != pauses):
                return self.conn.state is OPEN_STATE  # our reading paused: try again later
            await self.fail(1011, f"no pong within {seconds_text(self.limits.ping_timeout)}")
            return False
        return self.closed is None


