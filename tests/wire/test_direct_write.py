"""lang/wire/direct.py over real TCP on 127.0.0.1: frames are written without a yield and
read without pausing on both roles' plain TCP streams (the test fails if anyio's internals
change and either quietly stops engaging); never written while the transport is paused (a
peer that stops reading still holds the writer back, with no more than the high-water mark
and one frame buffered); and a reader that is blocked has no more than READ_AHEAD read ahead
of it (plus one read), reading paused, TCP pushing back; every byte arrives in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSStream

from lang.wire import direct
from lang.wire.client import ClientOptions, connect
from lang.wire.connection import WebSocket
from lang.wire.direct import READ_AHEAD, direct_reader, direct_writer
from lang.wire.frames import Limits
from lang.wire.server import ServerOptions, accept

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on a wait


async def tcp_pair() -> tuple[WebSocket, WebSocket, Any]:
    """A client and a server WebSocket over a real TCP connection; the listener."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    box: dict[str, WebSocket] = {}
    accepted = anyio.Event()

    async def one(stream: anyio.abc.SocketStream) -> None:
        box["server"] = await accept(stream, ServerOptions(limits=Limits()), "test")
        accepted.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, one)
        with anyio.fail_after(T):
            client = await connect(ClientOptions(url=f"ws://127.0.0.1:{port}/",
                                                 limits=Limits()))
            await accepted.wait()
        tg.cancel_scope.cancel()
    return client, box["server"], listener


class Collector:
    def __init__(self) -> None:
        self.items: list[str | bytes] = []
        self.changed = anyio.Event()

    async def __call__(self, msg: str | bytes) -> None:
        self.items.append(msg)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, n: int) -> None:
        with anyio.fail_after(T):
            while len(self.items) < n:
                await self.changed.wait()


async def test_both_roles_write_directly_on_plain_tcp() -> None:
    client, server, listener = await tcp_pair()
    try:
        assert client._direct is not None and server._direct is not None
        assert client._reader is not None and server._reader is not None
        got_c, got_s = Collector(), Collector()
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run, got_c)
            tg.start_soon(server.run, got_s)
            for i in range(100):
                await client.send(f"c{i}")
                await server.send(f"s{i}".encode())
            await got_s.wait_for(100)
            await got_c.wait_for(100)
            tg.cancel_scope.cancel()
        assert got_s.items == [f"c{i}" for i in range(100)]
        assert got_c.items == [f"s{i}".encode() for i in range(100)]
    finally:
        for ws in (client, server):
            await ws.abort()
        await listener.aclose()


async def test_the_reader_waits_without_asyncio_event_wait(monkeypatch: Any) -> None:
    """The direct reader waits on its own future in the read event's waiters (Event.wait
    looks the running loop up each time: a getpid() a message on 3.11), and is still woken
    by every read and by the peer's end of the stream."""
    client, server, listener = await tcp_pair()
    waits: list[object] = []
    original = asyncio.Event.wait

    async def counted(self: asyncio.Event) -> bool:
        waits.append(self)
        return await original(self)
    monkeypatch.setattr(asyncio.Event, "wait", counted)
    try:
        reader = server._reader
        assert reader is not None
        out, into = anyio.create_memory_object_stream[bytes](100)
        async with anyio.create_task_group() as tg:

            async def read_all() -> None:
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        await out.send(await reader.receive(65536))
                out.close()
            tg.start_soon(read_all)
            got = b""
            for i in range(20):  # each read comes while the reader waits
                await client.stream.send(b"x%d;" % i)
                with anyio.fail_after(T):
                    while got.count(b";") <= i:
                        got += await into.receive()
            await client.stream.send_eof()  # the end wakes the waiting reader too
            with anyio.fail_after(T):
                async for rest in into:
                    got += rest
        assert got == b"".join(b"x%d;" % i for i in range(20))
        read_event = server.stream._protocol.read_event
        assert read_event not in waits and read_event._waiters == deque()
    finally:
        for ws in (client, server):
            await ws.abort()
        await listener.aclose()


async def test_a_read_handed_to_a_reader_cancelled_before_it_ran_is_its_next() -> None:
    """A read that comes while the reader waits is handed to the reader's future; when the
    reader's task is cancelled before it ran (asyncio's Task.cancel, as asyncio.timeout does:
    anyio's scopes leave a task whose future is done alone until it ran), the read is not
    lost: it is what the next receive gives."""
    client, server, listener = await tcp_pair()
    try:
        reader = server._reader
        assert reader is not None
        protocol = server.stream._protocol
        with anyio.fail_after(T):
            task = asyncio.ensure_future(reader.receive(65536))
            while not protocol.read_event._waiters:  # until the reader waits
                await anyio.sleep(0)
            protocol.data_received(b"late")  # as the transport calls it; then, in the same
            task.cancel()                    # turn, the reader's task is cancelled
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await reader.receive(65536) == b"late"
            await client.stream.send(b"next")
            assert await reader.receive(65536) == b"next"
            # a handed read longer than the receive asked for: the rest is the next read
            task = asyncio.ensure_future(reader.receive(4))
            while not protocol.read_event._waiters:
                await anyio.sleep(0)
            await client.stream.send(b"abcdefghij")
            assert await task + await reader.receive(4) + await reader.receive(4) == \
                b"abcdefghij"
    finally:
        for ws in (client, server):
            await ws.abort()
        await listener.aclose()


async def test_other_streams_get_no_direct_write() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1)
    assert direct_writer(send) is None and direct_reader(send) is None
    assert direct_writer(object()) is None and direct_reader(object()) is None
    assert direct_writer.__module__ == "lang.wire.direct"
    assert TLSStream.__module__ != "anyio._backends._asyncio"  # TLS goes through send
    send.close()
    receive.close()


async def test_a_peer_that_stops_reading_holds_the_writer_back() -> None:
    client, server, listener = await tcp_pair()
    frame = 256 * 1024
    count = 64  # 16 MiB: far more than the socket buffers and the transport's high water
    payloads = [bytes([i]) * frame for i in range(count)]
    sent = 0
    try:
        transport = client.stream._transport  # type: ignore[attr-defined]
        high = transport.get_write_buffer_limits()[1]

        async def writer() -> None:
            nonlocal sent
            for p in payloads:
                await client.send(p)
                sent += 1
                # never written while paused: at most the high-water mark and one frame
                assert transport.get_write_buffer_size() <= high + frame + 16

        got = Collector()
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            # the server does not read yet: wait until the writer cannot go on
            with anyio.fail_after(T):
                await anyio.wait_all_tasks_blocked()
            assert sent < count, "the writer never had to wait: the test proves nothing"
            tg.start_soon(server.run, got)
            await got.wait_for(count)
            tg.cancel_scope.cancel()
        assert sent == count
        assert got.items == payloads
    finally:
        for ws in (client, server):
            await ws.abort()
        await listener.aclose()


async def test_a_blocked_reader_has_at_most_read_ahead_bytes_read_for_it() -> None:
    client, server, listener = await tcp_pair()
    frame = 64 * 1024
    count = 256  # 16 MiB from the client while the server's handler is stuck
    payloads = [bytes([i % 256]) * frame for i in range(count)]
    release = anyio.Event()
    stuck = anyio.Event()
    got: list[bytes] = []
    all_in = anyio.Event()
    sent = 0

    async def stuck_then_collect(msg: str | bytes) -> None:
        assert isinstance(msg, bytes)
        got.append(msg)
        if len(got) == 1:
            stuck.set()
            await release.wait()  # the handler is stuck: nothing is taken meanwhile
        if len(got) == count:
            all_in.set()

    async def flood() -> None:
        nonlocal sent
        for p in payloads:
            await client.send(p)
            sent += 1

    try:
        protocol = server.stream._protocol  # type: ignore[attr-defined]
        transport = server.stream._transport  # type: ignore[attr-defined]
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run, stuck_then_collect)
            tg.start_soon(flood)
            # the reader is stuck: the transport reads ahead until READ_AHEAD, then pauses
            # (a state of the transport, not an event: looked at until it holds)
            with anyio.fail_after(T):
                await stuck.wait()
                while transport.is_reading():
                    await anyio.sleep(0.01)
                await anyio.wait_all_tasks_blocked()
            held = sum(map(len, protocol.read_queue))
            assert sent < count, "the client never had to wait: the test proves nothing"
            assert READ_AHEAD < held <= READ_AHEAD + 256 * 1024, held
            release.set()
            with anyio.fail_after(T):
                await all_in.wait()
            tg.cancel_scope.cancel()
        assert got == payloads
    finally:
        for ws in (client, server):
            await ws.abort()
        await listener.aclose()


async def test_connect_tcp_skips_happy_eyeballs_for_an_address_and_ends_cleanly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """direct.connect_tcp: an IP address (v4 or v6) is connected by the backend itself, a
    host name still by anyio (localhost: maybe two addresses); a refused connection raises
    ConnectionRefusedError (what lang.wire.client words as "connection refused"); and a
    direct reader sees the peer's end of stream as EndOfStream, every byte before it first."""
    by_anyio: list[str] = []
    anyio_connect = anyio.connect_tcp

    async def counted(host: str, port: int, **kw: Any) -> Any:
        by_anyio.append(host)
        return await anyio_connect(host, port, **kw)

    monkeypatch.setattr(anyio, "connect_tcp", counted)
    for family, host in ((4, "127.0.0.1"), (6, "::1")):
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
        except OSError:
            assert family == 6, "no IPv4 loopback"
            continue  # no IPv6 on this machine
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve(stream: anyio.abc.SocketStream) -> None:
            await stream.send(b"bye")
            await stream.aclose()

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            with anyio.fail_after(T):
                for target in (host, "localhost" if family == 4 else host):
                    stream = await direct.connect_tcp(target, port)
                    assert direct_writer(stream) is not None
                    reader = direct_reader(stream)
                    assert reader is not None
                    got = b""
                    with pytest.raises(anyio.EndOfStream):
                        while True:
                            got += await reader.receive(65536)
                    assert got == b"bye"
                    await stream.aclose()
            tg.cancel_scope.cancel()
    assert by_anyio == ["localhost"]
    closed = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = closed.extra(anyio.abc.SocketAttribute.local_port)
    await closed.aclose()
    with anyio.fail_after(T), pytest.raises(ConnectionRefusedError):
        await direct.connect_tcp("127.0.0.1", port)
