"""lang.wire over in-memory byte streams: no sockets, the real handshake on both ends.

Every test pairs a WebSocket in the client role with one in the server role, made by
`_client_handshake` and `accept` over a pair of connected in-memory streams. The end under
test runs its reader (`run`); the other end is either running too, or is driven by hand
(`Raw`): its wsproto connection makes frames, or the test crafts the bytes itself, and what
it receives is parsed by its wsproto connection without any of the transport's reactions.
"""

from __future__ import annotations

import math
import os
import struct
import tracemalloc
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)

from lang.wire.client import ClientOptions, _client_handshake
from lang.wire.connection import WebSocket
from lang.wire.frames import BoundedDeflate, Closed, Limits
from lang.wire.server import ServerOptions, accept

pytestmark = pytest.mark.anyio

ROLES = ["client", "server"]
T = 30  # seconds: the hard limit on any wait in this file
# No test asserts an upper bound on elapsed time (a busy machine can stretch any of them):
# a test of a timeout waits on its event under the hard limit, and asserts a lower bound only
# where the timer guarantees it.


# ---------------------------------------------------------------- in-memory streams


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of a connected pair. `receive` returns at most max_bytes; `aclose` and
    `send_eof` end the peer's stream (EndOfStream once it has read what was sent)."""

    def __init__(self, name: str, send: Any, receive: Any, log: list[str]) -> None:
        self.name = name
        self._send = send
        self._receive = receive
        self._buffer = b""
        self._log = log
        self.sent: list[bytes] = []  # every chunk written, in order
        self.on_send: Callable[[bytes], None] | None = None
        self.gate: anyio.Event | None = None  # when set, receive waits for it first
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._buffer:
            if self.gate is not None:
                await self.gate.wait()
            self._buffer = await self._receive.receive()  # EndOfStream when the peer ended
        while len(self._buffer) < max_bytes:  # like TCP: whatever is there, in one read
            try:
                self._buffer += self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if not item:
            return
        data = bytes(item)
        await self._send.send(data)
        self.sent.append(data)
        if self.on_send is not None:
            self.on_send(data)

    async def send_eof(self) -> None:
        self._send.close()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self._log.append(self.name)
        self._send.close()
        self._receive.close()

    @property
    def bytes_sent(self) -> int:
        return sum(len(x) for x in self.sent)


def memory_pair(buffer: float = math.inf) -> tuple[MemoryByteStream, MemoryByteStream, list[str]]:
    """(client end, server end, log of which end closed first). `buffer` is how many chunks
    each direction holds before a sender waits for the reader."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](buffer)
    log: list[str] = []
    return (MemoryByteStream("client", a_send, a_receive, log),
            MemoryByteStream("server", b_send, b_receive, log), log)


@dataclass
class Pair:
    client: WebSocket
    server: WebSocket
    close_order: list[str]
    failures: dict[str, list[str]] = field(default_factory=dict)

    def end(self, role: str) -> WebSocket:
        return self.client if role == "client" else self.server

    def other(self, role: str) -> WebSocket:
        return self.server if role == "client" else self.client


async def connected(*, client_limits: Limits | None = None, server_limits: Limits | None = None,
                    client_compression: bool = False, server_compression: bool = False,
                    buffer: float = math.inf) -> Pair:
    """Run the real opening handshake on both ends of an in-memory pair."""
    cs, ss, log = memory_pair(buffer)
    failures: dict[str, list[str]] = {"client": [], "server": []}
    copts = ClientOptions(url="ws://mem/", compression=client_compression,
                          limits=client_limits or Limits())
    sopts = ServerOptions(compression=server_compression, limits=server_limits or Limits())
    box: dict[str, WebSocket] = {}

    async def serve() -> None:
        box["server"] = await accept(ss, sopts, "mem", on_failure=failures["server"].append)

    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            box["client"] = await _client_handshake(cs, copts, "mem", 80, False, "/chat?x=1",
                                                    on_failure=failures["client"].append)
    return Pair(box["client"], box["server"], log, failures)


def limits(**kw: Any) -> Limits:
    # close_timeout: long enough for a busy machine's answer to a close frame (a test of the
    # timeout sets its own, short one)
    base = {"ping_interval": 0, "close_timeout": 10.0}
    base.update(kw)
    return Limits(**base)


async def pair_for(role: str, **kw: Any) -> Pair:
    """A pair where the end in `role` gets the limits `kw` (keep-alive off by default)."""
    mine = limits(**kw)
    if role == "client":
        return await connected(client_limits=mine, server_limits=limits())
    return await connected(client_limits=limits(), server_limits=mine)


class Collector:
    """An on_message callback that keeps what arrives and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[str | bytes] = []
        self._changed = anyio.Event()

    async def __call__(self, msg: str | bytes) -> None:
        self.items.append(msg)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, n: int) -> list[str | bytes]:
        with anyio.fail_after(T):
            while len(self.items) < n:
                await self._changed.wait()
        return self.items


class Raw:
    """Drive one handshaken WebSocket by hand: its wsproto connection makes and parses
    frames, nothing answers on its own."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.pending: deque[Event] = deque()

    async def send(self, event: Event) -> None:
        await self.ws.stream.send(self.ws.conn.send(event))

    async def send_raw(self, data: bytes) -> None:
        await self.ws.stream.send(data)

    async def next_event(self) -> Event | None:
        """The next wsproto event from the other end; None at end of stream."""
        with anyio.fail_after(T):
            while not self.pending:
                try:
                    data = await self.ws.stream.receive(65536)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return None
                self.ws.conn.receive_data(data)
                self.pending.extend(self.ws.conn.events())
            return self.pending.popleft()

    async def until(self, kind: type) -> Any:
        while True:
            ev = await self.next_event()
            if ev is None:
                raise AssertionError(f"stream ended before {kind.__name__}")
            if isinstance(ev, kind):
                return ev

    async def at_eof(self) -> bool:
        """Read (and discard) until the stream ends."""
        with anyio.fail_after(T):
            while True:
                try:
                    await self.ws.stream.receive(65536)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return True


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool,
          rsv1: bool = False) -> bytes:
    """A frame made by hand (RFC 6455 §5.2); clients must mask, servers must not."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        _mask_fast(payload, key)
    return head + key + body


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def raw_frame_for(role: str, opcode: int, payload: bytes, **kw: Any) -> bytes:
    """A frame the other end would send to the end in `role` (masked toward a server)."""
    return frame(opcode, payload, masked=(role == "server"), **kw)


async def run_until_closed(ws: WebSocket, on_message: Any = None) -> Closed:
    with anyio.fail_after(T):
        return await ws.run(on_message or Collector())


# ---------------------------------------------------------------- handshake


async def test_handshake_gives_both_ends_the_peer() -> None:
    p = await connected()
    assert p.client.client and not p.server.client
    assert p.client.open and p.server.open
    assert p.server.peer.path == "/chat" and p.server.peer.query == "x=1"
    assert p.server.peer.remote == "mem"
    assert p.client.peer.remote == "mem:80"
    assert p.client.peer.subprotocol is None


async def test_frames_in_the_same_read_as_the_handshake_response() -> None:
    """A server that speaks first: its frames can reach the client in the same read as the
    101 response, and must be delivered without waiting for more bytes."""
    cs, ss, _ = memory_pair()
    cs.gate = anyio.Event()  # the client reads only once the server has written everything
    box: dict[str, WebSocket] = {}

    async def serve() -> None:
        server = await accept(ss, ServerOptions(limits=limits()), "mem")
        await server.send("welcome")
        await server.send(b"\x01")
        cs.gate.set()
        box["server"] = server

    got = Collector()
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            client = await _client_handshake(cs, ClientOptions(url="ws://mem/", limits=limits()),
                                             "mem", 80, False, "/")
            tg.start_soon(client.run, got)
            # nothing more comes: a client that waited for more bytes never delivers them
            await got.wait_for(2)
            assert got.items == ["welcome", b"\x01"]
            tg.cancel_scope.cancel()


# ---------------------------------------------------------------- messages


async def test_text_and_binary_both_ways() -> None:
    p = await connected(client_limits=limits(), server_limits=limits())
    got_c, got_s = Collector(), Collector()
    out: dict[str, Closed] = {}

    async def reader(role: str, col: Collector) -> None:
        out[role] = await p.end(role).run(col)

    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, "client", got_c)
            tg.start_soon(reader, "server", got_s)
            await p.client.send("héllo ✓")
            await p.client.send(b"\x00\x01\xff")
            await p.server.send("")
            await p.server.send(b"")
            await p.server.send("x" * 70000)  # over one read
            await p.server.send(bytes(range(256)) * 300)
            assert await got_s.wait_for(2) == ["héllo ✓", b"\x00\x01\xff"]
            assert await got_c.wait_for(4) == ["", b"", "x" * 70000, bytes(range(256)) * 300]
            assert type(got_c.items[1]) is bytes and type(got_s.items[1]) is bytes
            assert await p.client.close(1000, "done") == Closed(1000, "", True)
    assert out["client"] == Closed(1000, "", True)
    assert out["server"] == Closed(1000, "done", True)
    assert p.client.messages_in == 4 and p.server.messages_in == 2


async def test_send_after_close_raises_and_enqueue_is_a_no_op() -> None:
    p = await connected(client_limits=limits(), server_limits=limits())
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(p.server.run, Collector())
            await p.client.close()
    assert not p.client.open
    with pytest.raises(ConnectionError, match="not connected"):
        await p.client.send("late")
    assert p.client.enqueue("late") is True  # nothing is queued, nothing fails


@pytest.mark.parametrize("role", ROLES)
async def test_fragmented_messages_are_reassembled(role: str) -> None:
    p = await pair_for(role)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws, got)
        await raw.send(TextMessage(data="hel", message_finished=False))
        await raw.send(Ping(payload=b"mid"))  # control frames may come between fragments
        await raw.send(TextMessage(data="lo", message_finished=False))
        await raw.send(TextMessage(data=" world", message_finished=True))
        await raw.send(BytesMessage(data=b"\x01", message_finished=False))
        await raw.send(BytesMessage(data=b"\x02\x03", message_finished=True))
        # a UTF-8 character split across two frames
        await raw.send_raw(raw_frame_for(role, 0x1, b"caf\xc3", fin=False))
        await raw.send_raw(raw_frame_for(role, 0x0, b"\xa9", fin=True))
        assert await got.wait_for(3) == ["hello world", b"\x01\x02\x03", "café"]
        assert type(got.items[1]) is bytes
        pong = await raw.until(Pong)
        assert pong.payload == b"mid"
        await raw.send(CloseConnection(code=1000))
        assert isinstance(await raw.until(CloseConnection), CloseConnection)
        if role == "client":  # the server (raw) ends TCP
            await raw.ws.stream.aclose()
    assert ws.closed == Closed(1000, "", True)


@pytest.mark.parametrize("role", ROLES)
async def test_ping_is_answered_with_pong(role: str) -> None:
    p = await pair_for(role)
    ws, raw = p.end(role), Raw(p.other(role))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws)
        await raw.send(Ping(payload=b"are you there"))
        pong = await raw.until(Pong)
        assert pong.payload == b"are you there"
        await raw.ws.stream.aclose()
    assert ws.closed == Closed(1006, "", False)


# ---------------------------------------------------------------- closing


@pytest.mark.parametrize("initiator", ROLES)
async def test_close_handshake_from_either_side(initiator: str) -> None:
    p = await connected(client_limits=limits(), server_limits=limits())
    out: dict[str, Closed] = {}

    async def reader(role: str) -> None:
        out[role] = await p.end(role).run(Collector())

    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, "client")
            tg.start_soon(reader, "server")
            closed = await p.end(initiator).close(4000, "bye")
    responder = "server" if initiator == "client" else "client"
    # the initiator gets the peer's echo of the code; the responder the frame that was sent
    assert closed == out[initiator] == Closed(4000, "", True)
    assert out[responder] == Closed(4000, "bye", True)
    assert p.close_order == ["server", "client"]  # RFC 6455 §7.1.1: the server ends TCP first


@pytest.mark.parametrize("role", ROLES)
async def test_close_from_inside_the_reader_returns_none(role: str) -> None:
    p = await pair_for(role)
    ws = p.end(role)
    seen: list[Any] = []

    async def on_message(msg: str | bytes) -> None:
        seen.append(await ws.close(1000, "from the callback"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, p.other(role))
        await p.other(role).send("close please")
        assert await run_until_closed(ws, on_message) == Closed(1000, "", True)
    assert seen == [None]
    assert p.other(role).closed == Closed(1000, "from the callback", True)


@pytest.mark.parametrize("role", ROLES)
async def test_abrupt_eof_is_1006(role: str) -> None:
    p = await pair_for(role)
    ws = p.end(role)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws)
        await ws.send("one")  # the connection works...
        await p.other(role).stream.aclose()  # ...then drops without a close frame
    assert ws.closed == Closed(1006, "", False)
    assert not ws.open
    assert ws.stream.closed


@pytest.mark.parametrize("reading", [True, False], ids=["reader-running", "no-reader"])
@pytest.mark.parametrize("role", ROLES)
async def test_close_timeout_drops_a_peer_that_ignores_our_close(role: str, reading: bool
                                                                  ) -> None:
    p = await pair_for(role, close_timeout=0.2)
    ws, raw = p.end(role), Raw(p.other(role))
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            if reading:
                tg.start_soon(ws.run, Collector())
            t0 = anyio.current_time()
            closed = await ws.close(1000, "leaving")
            elapsed = anyio.current_time() - t0
            ev = await raw.until(CloseConnection)  # it came, the peer just never answers
            assert (ev.code, ev.reason) == (1000, "leaving")
            assert await raw.at_eof()  # and then TCP was dropped
    assert closed == Closed(1006, "", False)
    assert elapsed >= 0.15  # it waited for close_timeout (0.2 s)
    assert ws.stream.closed


@pytest.mark.parametrize("role", ROLES)
async def test_close_timeout_bounds_close_when_the_peer_stopped_reading(role: str) -> None:
    p = await connected(client_limits=limits(close_timeout=0.3),
                        server_limits=limits(close_timeout=0.3), buffer=1)
    ws = p.end(role)
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            ws.spawn = tg.start_soon
            tg.start_soon(ws.run, Collector())
            for part in (b"x" * 1000, b"y" * 1000, b"z" * 1000):
                assert ws.enqueue(part)  # the pipe holds one chunk: the flusher blocks
            closed = await ws.close()  # (it hung: the hard limit fails that)
    assert closed == Closed(1006, "", False)
    assert ws.stream.closed


async def test_client_drops_tcp_itself_when_the_server_does_not() -> None:
    """After the close handshake a client waits close_timeout for the server to end TCP."""
    p = await pair_for("client", close_timeout=0.2)
    ws, raw = p.client, Raw(p.server)
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, Collector())
            await raw.send(CloseConnection(code=1001, reason="going"))
            ev = await raw.until(CloseConnection)
            assert ev.code == 1001
            assert await raw.at_eof()  # the server never closed: the client did
    assert ws.closed == Closed(1001, "going", True)
    assert p.close_order == ["client"]


# ---------------------------------------------------------------- failing the connection


async def _expect_failure(role: str, raw: Raw, ws: WebSocket, code: int) -> CloseConnection:
    """The end under test sends a close frame with `code`; the raw end answers it. After a
    frame it could not parse, the failing end has already dropped TCP (RFC 6455 §7.1.7: it
    cannot read the answer), so the answer may find the stream closed."""
    ev = await raw.until(CloseConnection)
    assert ev.code == code, ev
    try:
        await raw.send(ev.response())
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        assert code in (1002, 1007, 1009)
    if role == "client":  # the raw server ends TCP after the handshake
        await raw.ws.stream.aclose()
    return ev


@pytest.mark.parametrize("role", ROLES)
async def test_message_over_max_message_fails_with_1009(role: str) -> None:
    p = await pair_for(role, max_message=1000)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws, got)
        await raw.send(BytesMessage(data=b"a" * 1000))  # exactly the limit passes
        await raw.send(TextMessage(data="é" * 500))  # 1000 bytes of UTF-8 too
        assert await got.wait_for(2) == [b"a" * 1000, "é" * 500]
        await raw.send(TextMessage(data="é" * 501))  # 501 characters, 1002 bytes
        ev = await _expect_failure(role, raw, ws, 1009)
    assert got.items == [b"a" * 1000, "é" * 500]
    assert p.failures[role] == ["message over 1000 bytes; closing with 1009 (message too big)"]
    assert ws.closed is not None and ws.closed.code == 1009
    assert "1000 bytes" in ev.reason


@pytest.mark.parametrize("role", ROLES)
async def test_fragments_over_max_message_fail_before_the_end(role: str) -> None:
    p = await pair_for(role, max_message=1000)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws, got)
        for _ in range(3):
            await raw.send(BytesMessage(data=b"x" * 400, message_finished=False))
        await _expect_failure(role, raw, ws, 1009)  # no final fragment was needed
    assert got.items == []
    assert len(p.failures[role]) == 1 and "1009" in p.failures[role][0]


@pytest.mark.parametrize("role", ROLES)
async def test_invalid_utf8_fails_with_1007(role: str) -> None:
    p = await pair_for(role, close_timeout=0.3)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws, got)
        await raw.send_raw(raw_frame_for(role, 0x1, b"ok \xff\xfe"))
        await _expect_failure(role, raw, ws, 1007)
    assert got.items == []
    assert ws.closed is not None and ws.closed.code == 1007
    assert len(p.failures[role]) == 1 and "1007 (invalid data)" in p.failures[role][0]


@pytest.mark.parametrize(("role", "bad"), [
    ("client", "reserved-opcode"), ("server", "reserved-opcode"),
    ("server", "unmasked-frame"), ("client", "masked-frame"),
    ("client", "fragmented-ping"), ("server", "continuation-without-start"),
    ("client", "ping-over-125-bytes"), ("server", "rsv1-not-negotiated"),
    ("client", "close-code-1005-on-the-wire"), ("server", "close-code-999"),
])
async def test_protocol_errors_fail_with_1002(role: str, bad: str) -> None:
    p = await pair_for(role, close_timeout=0.3)
    ws, raw = p.end(role), Raw(p.other(role))
    data = {
        "reserved-opcode": raw_frame_for(role, 0x3, b"??"),
        "unmasked-frame": frame(0x1, b"hi", masked=False),
        "masked-frame": frame(0x1, b"hi", masked=True),
        "fragmented-ping": raw_frame_for(role, 0x9, b"p", fin=False),
        "continuation-without-start": raw_frame_for(role, 0x0, b"x"),
        "ping-over-125-bytes": raw_frame_for(role, 0x9, b"p" * 126),
        "rsv1-not-negotiated": raw_frame_for(role, 0x1, b"x", rsv1=True),
        "close-code-1005-on-the-wire": raw_frame_for(role, 0x8, struct.pack("!H", 1005)),
        "close-code-999": raw_frame_for(role, 0x8, struct.pack("!H", 999)),
    }[bad]
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws, got)
        await raw.send_raw(data)
        await _expect_failure(role, raw, ws, 1002)
    assert got.items == []
    assert ws.closed is not None and ws.closed.code == 1002
    assert len(p.failures[role]) == 1 and "1002 (protocol error)" in p.failures[role][0]


@pytest.mark.parametrize("role", ROLES)
async def test_close_reason_that_is_not_utf8_fails_with_1007(role: str) -> None:
    p = await pair_for(role, close_timeout=0.3)
    ws, raw = p.end(role), Raw(p.other(role))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws)
        await raw.send_raw(raw_frame_for(role, 0x8, struct.pack("!H", 1000) + b"\xc3("))
        await _expect_failure(role, raw, ws, 1007)
    assert ws.closed is not None and ws.closed.code == 1007


@pytest.mark.parametrize("role", ROLES)
async def test_failure_without_an_answer_keeps_our_code(role: str) -> None:
    """When we fail the connection and the peer never answers, Closed has our code."""
    p = await pair_for(role, max_message=10, close_timeout=0.1)
    ws, raw = p.end(role), Raw(p.other(role))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, ws)
        await raw.send(TextMessage(data="x" * 11))
        assert (await raw.until(CloseConnection)).code == 1009
        assert await raw.at_eof()
    assert ws.closed == Closed(1009, "message over 10 bytes", False)


# ---------------------------------------------------------------- permessage-deflate


def _extensions(ws: WebSocket) -> list[Any]:
    return list(ws.conn._proto.extensions)  # type: ignore[attr-defined]


async def test_permessage_deflate_negotiated_and_working() -> None:
    p = await connected(client_limits=limits(), server_limits=limits(),
                        client_compression=True, server_compression=True)
    assert [type(e) for e in _extensions(p.client)] == [BoundedDeflate]
    assert [type(e) for e in _extensions(p.server)] == [BoundedDeflate]
    text = "the quick brown fox jumps over the lazy dog. " * 3000  # 135 KB
    blob = bytes(200_000)
    got_c, got_s = Collector(), Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, p.client, got_c)
        tg.start_soon(run_until_closed, p.server, got_s)
        before_c, before_s = p.client.stream.bytes_sent, p.server.stream.bytes_sent
        for _ in range(3):
            await p.client.send(text)
            await p.server.send(blob)
        assert await got_s.wait_for(3) == [text] * 3
        assert await got_c.wait_for(3) == [blob] * 3
        # compressed on the wire, both ways
        assert p.client.stream.bytes_sent - before_c < len(text) * 3 // 20
        assert p.server.stream.bytes_sent - before_s < len(blob) * 3 // 20
        await p.client.close()
    assert p.client.closed == Closed(1000, "", True)


@pytest.mark.parametrize(("client_wants", "server_wants"), [(True, False), (False, True)])
async def test_no_compression_unless_both_want_it(client_wants: bool, server_wants: bool
                                                  ) -> None:
    p = await connected(client_limits=limits(), server_limits=limits(),
                        client_compression=client_wants, server_compression=server_wants)
    assert _extensions(p.client) == [] and _extensions(p.server) == []
    got = Collector()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until_closed, p.server, got)
        tg.start_soon(run_until_closed, p.client)
        before = p.client.stream.bytes_sent
        await p.client.send("a" * 10_000)
        assert await got.wait_for(1) == ["a" * 10_000]
        assert p.client.stream.bytes_sent - before > 10_000
        await p.client.close()


def _deflate_bomb(size: int) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1) that inflates to `size` zero bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    out = [comp.compress(chunk) for _ in range(size // len(chunk))]
    out.append(comp.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(out)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "many-frames"])
@pytest.mark.parametrize("role", ROLES)
async def test_deflate_bomb_fails_with_1009_without_inflating(role: str, fragmented: bool
                                                              ) -> None:
    inflated = 64 * 1024 * 1024
    bomb = _deflate_bomb(inflated)
    assert len(bomb) < 100_000
    p = await connected(client_limits=limits(close_timeout=0.3),
                        server_limits=limits(close_timeout=0.3),
                        client_compression=True, server_compression=True)
    ws, raw = p.end(role), Raw(p.other(role))
    assert _extensions(ws)
    if fragmented:  # the same stream cut into frames: RSV1 on the first only
        step = 4096
        parts = [bomb[i:i + step] for i in range(0, len(bomb), step)]
        frames = [raw_frame_for(role, 0x2 if i == 0 else 0x0, part, fin=(i == len(parts) - 1),
                                rsv1=(i == 0)) for i, part in enumerate(parts)]
    else:
        frames = [raw_frame_for(role, 0x2, bomb, rsv1=True)]
    got = Collector()
    tracemalloc.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_until_closed, ws, got)
            for f in frames:
                if ws.closed is not None or ws.conn.state.name != "OPEN":
                    break
                await raw.send_raw(f)
            await _expect_failure(role, raw, ws, 1009)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.items == []
    assert ws.closed is not None and ws.closed.code == 1009
    assert len(p.failures[role]) == 1 and "1009" in p.failures[role][0]
    # the same words as without compression, not wsproto's "error in extension"
    assert p.failures[role][0].startswith(f"message over {limits().max_message} bytes"), \
        p.failures[role][0]
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while refusing a 64 MiB bomb"


# ---------------------------------------------------------------- keep-alive


@pytest.mark.parametrize("role", ROLES)
async def test_keepalive_fails_1011_when_no_pong_comes(role: str) -> None:
    p = await pair_for(role, ping_interval=0.05, ping_timeout=0.05, close_timeout=0.1)
    ws, raw = p.end(role), Raw(p.other(role))
    failed_at: list[float] = []
    p.end(role).on_failure = lambda why: (failed_at.append(anyio.current_time()),
                                          p.failures[role].append(why))
    t0 = anyio.current_time()
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.keepalive)
            closed = await ws.run(Collector())
    ping = await raw.until(Ping)  # the pings went out; the raw end just never answered
    assert ping.payload == b"evt"
    assert (await raw.until(CloseConnection)).code == 1011
    assert p.failures[role] == ["no pong within 0.05s; closing with 1011 (internal error)"]
    assert failed_at[0] - t0 >= 0.05 + 0.05 - 0.005  # not before ping_interval + ping_timeout
    assert closed == Closed(1011, "no pong within 0.05s", False)


@pytest.mark.parametrize("role", ROLES)
async def test_keepalive_fails_1011_when_the_peer_stopped_reading(role: str) -> None:
    """A dead peer that does not even read: our writes are stuck behind a full pipe. The
    missing pong must still fail the connection within ping_interval + ping_timeout."""
    mine = limits(ping_interval=0.05, ping_timeout=0.05, close_timeout=0.1)
    if role == "client":
        p = await connected(client_limits=mine, server_limits=limits(), buffer=1)
    else:
        p = await connected(client_limits=limits(), server_limits=mine, buffer=1)
    ws = p.end(role)
    with anyio.fail_after(T):  # (it never failed: the hard limit fails that)
        async with anyio.create_task_group() as tg:
            ws.spawn = tg.start_soon
            for part in (b"x" * 1000, b"y" * 1000, b"z" * 1000):
                assert ws.enqueue(part)  # the pipe holds one chunk: the flusher blocks
            tg.start_soon(ws.keepalive)
            closed = await ws.run(Collector())
    assert p.failures[role] == ["no pong within 0.05s; closing with 1011 (internal error)"]
    assert closed.code == 1011 and not closed.clean


@pytest.mark.parametrize("role", ROLES)
async def test_keepalive_keeps_an_answering_peer(role: str) -> None:
    p = await pair_for(role, ping_interval=0.01, ping_timeout=T)  # no pong may be late
    ws = p.end(role)
    pings = 0
    five = anyio.Event()

    def count(data: bytes) -> None:
        nonlocal pings
        if data[0] == 0x89:
            pings += 1
            if pings >= 5:
                five.set()

    ws.stream.on_send = count
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.keepalive)
            tg.start_soon(ws.run, Collector())
            tg.start_soon(p.other(role).run, Collector())
            await five.wait()
            assert ws.open and p.failures[role] == []
            await ws.close()
    assert ws.closed == Closed(1000, "", True)


async def test_keepalive_off_with_zero_interval() -> None:
    p = await connected(client_limits=limits(ping_interval=0))
    with anyio.fail_after(T):
        await p.client.keepalive()  # returns at once
    assert len(p.client.stream.sent) == 1  # only the handshake request went out


# ---------------------------------------------------------------- back-pressure and order


@pytest.mark.parametrize("role", ROLES)
async def test_enqueue_refuses_once_out_limit_bytes_wait(role: str) -> None:
    p = await connected(client_limits=limits(), server_limits=limits(), buffer=4)
    ws = p.end(role)  # the other end never reads
    assert ws.out_limit == 1024 * 1024
    msg = b"z" * 65536
    accepted = 0
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            ws.spawn = tg.start_soon
            while ws.enqueue(msg):
                accepted += 1
                assert accepted < 100
                await anyio.lowlevel.checkpoint()  # let the flusher run and block
            assert ws.enqueue(b"x") is False  # still full
            assert ws.enqueue("x") is False
            queued = accepted * len(msg)
            assert queued > ws.out_limit  # nothing was refused before the limit
            assert queued < ws.out_limit + 8 * len(msg) + 4 * len(msg)
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("role", ROLES)
async def test_frame_order_with_concurrent_senders_and_compression(role: str) -> None:
    p = await connected(client_limits=limits(), server_limits=limits(),
                        client_compression=True, server_compression=True, buffer=2)
    ws, other = p.end(role), p.other(role)
    got = Collector()
    senders, per_sender = 12, 40

    def body(who: str, i: int) -> str:
        return f"{who}:{i}:" + (f"payload {who} {i} " * (1 + (i * 7) % 23))

    async def sender(k: int) -> None:
        for i in range(per_sender):
            if i % 3 == 0:
                await ws.send(body(f"s{k}", i).encode())  # binary too
            else:
                await ws.send(body(f"s{k}", i))

    async def enqueuer() -> None:
        for i in range(per_sender):
            assert ws.enqueue(body("q", i))
            await anyio.lowlevel.checkpoint()

    total = (senders + 1) * per_sender
    with anyio.fail_after(T * 2):
        async with anyio.create_task_group() as tg:
            ws.spawn = tg.start_soon
            tg.start_soon(run_until_closed, other, got)
            tg.start_soon(run_until_closed, ws)
            async with anyio.create_task_group() as senders_tg:
                for k in range(senders):
                    senders_tg.start_soon(sender, k)
                senders_tg.start_soon(enqueuer)
            await got.wait_for(total)
            await ws.close()
    assert p.failures == {"client": [], "server": []}
    assert len(got.items) == total
    seen: dict[str, list[int]] = {}
    for item in got.items:
        text = item.decode() if isinstance(item, bytes) else item
        who, i, _ = text.split(":", 2)
        assert text == body(who, int(i))
        assert isinstance(item, bytes) == (who != "q" and int(i) % 3 == 0)
        seen.setdefault(who, []).append(int(i))
    assert seen == {who: list(range(per_sender)) for who in [*(f"s{k}" for k in range(senders)),
                                                            "q"]}


# ---------------------------------------------------------------- found in review


@pytest.mark.parametrize("role", ROLES)
async def test_answering_a_close_frame_is_bounded_when_a_write_is_stuck(role: str) -> None:
    """The peer stopped reading, then sent a close frame: our reply waited, without a limit,
    behind a write stuck on the full pipe, and keep-alive no longer pinged a connection that
    was not open. close_timeout bounds it; TCP is then dropped."""
    mine = limits(close_timeout=0.2)
    if role == "client":
        p = await connected(client_limits=mine, server_limits=limits(), buffer=1)
    else:
        p = await connected(client_limits=limits(), server_limits=mine, buffer=1)
    ws, raw = p.end(role), Raw(p.other(role))
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            ws.spawn = tg.start_soon
            for part in (b"x" * 1000, b"y" * 1000, b"z" * 1000):
                assert ws.enqueue(part)  # the pipe holds one chunk: the flusher blocks
            await raw.send(CloseConnection(code=1000, reason="done"))
            closed = await ws.run(Collector())
            tg.cancel_scope.cancel()
    # the peer's close frame came; ours could not be written: not a clean close
    assert closed == Closed(1000, "done", False)
    assert ws.stream.closed


@pytest.mark.parametrize("role", ROLES)
async def test_messages_sent_before_the_peer_saw_our_close_are_delivered(role: str) -> None:
    """RFC 6455 §5.5.1 ends *sending* data after a close frame; what the peer sent before it
    saw ours was dropped."""
    p = await pair_for(role)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, got)

            async def closing() -> None:
                await ws.close(1000, "bye")

            tg.start_soon(closing)
            ev = await raw.until(CloseConnection)  # our close frame is out...
            assert (ev.code, ev.reason) == (1000, "bye")
            # ...these crossed it (made by hand: the raw end's wsproto saw our close)
            await raw.send_raw(raw_frame_for(role, 0x1, b"in flight"))
            await raw.send_raw(raw_frame_for(role, 0x2, b"\x00too"))
            await raw.send(ev.response())
            if role == "client":
                await raw.ws.stream.aclose()
    assert got.items == ["in flight", b"\x00too"]
    assert ws.closed == Closed(1000, "bye", True)  # wsproto's answer echoes the reason


@pytest.mark.parametrize("role", ROLES)
async def test_nothing_is_delivered_after_we_failed_the_connection(role: str) -> None:
    """RFC 6455 §7.1.7: once we fail the connection, what follows is not processed."""
    p = await pair_for(role, max_message=10)
    ws, raw = p.end(role), Raw(p.other(role))
    got = Collector()
    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, got)
            await raw.send(TextMessage(data="x" * 100))  # over max_message: 1009
            ev = await raw.until(CloseConnection)
            assert ev.code == 1009
            await raw.send_raw(raw_frame_for(role, 0x1, b"small"))
            await raw.send(ev.response())
            if role == "client":
                await raw.ws.stream.aclose()
    assert got.items == []
    assert ws.closed is not None and ws.closed.code == 1009


@pytest.mark.parametrize("role", ROLES)
async def test_close_lets_a_reader_held_back_by_backpressure_read_the_answer(role: str
                                                                             ) -> None:
    """The message callback holds the reader back (a full queue) and registers `unpause`;
    close() calls it, so the reader reads on to the peer's close frame."""
    p = await pair_for(role, close_timeout=T)
    ws, raw = p.end(role), Raw(p.other(role))
    held = anyio.Event()
    seen: list[Any] = []

    async def on_message(msg: str | bytes) -> None:
        seen.append(msg)
        if len(seen) == 1:  # hold the reader back until close() lets it go
            go_on = anyio.Event()
            ws.unpause = go_on.set
            ws.pauses += 1
            held.set()
            await go_on.wait()
            ws.unpause = None

    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, on_message)
            await raw.send(TextMessage(data="first"))
            await held.wait()

            async def answer() -> None:
                ev = await raw.until(CloseConnection)
                await raw.send_raw(raw_frame_for(role, 0x1, b"crossed"))
                await raw.send(ev.response())
                if role == "client":
                    await raw.ws.stream.aclose()

            tg.start_soon(answer)
            closed = await ws.close(1000, "")
    assert closed == Closed(1000, "", True)
    assert seen == ["first", "crossed"]


@pytest.mark.parametrize("role", ROLES)
async def test_a_missed_pong_while_reading_was_paused_does_not_fail(role: str) -> None:
    """Keep-alive must not blame the peer for a pong we did not read because our own
    backpressure held the reader back; once reading goes on, pongs count again."""
    # the first round waits out ping_timeout; the second needs its pong within it
    p = await pair_for(role, ping_interval=0.02, ping_timeout=1.0)
    ws, other = p.end(role), p.other(role)
    go_on = anyio.Event()
    held = anyio.Event()
    rounds: list[bool] = []

    async def on_message(msg: str | bytes) -> None:
        ws.unpause = go_on.set
        ws.pauses += 1
        held.set()
        await go_on.wait()
        ws.unpause = None

    with anyio.fail_after(T):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, on_message)
            tg.start_soon(other.run, Collector())
            await other.send("hold the reader")
            await held.wait()
            rounds.append(await ws.ping_round())  # the pong cannot be read: not a failure
            go_on.set()
            rounds.append(await ws.ping_round())  # reading again: the pong comes
            await ws.close()
    assert rounds == [True, True]
    assert p.failures[role] == []
    assert ws.closed == Closed(1000, "", True)
