"""The frame fast path (lang.wire.fastframe) is in use on the real WebSocket class: on an
evt server over 127.0.0.1 with the `websockets` library's client, a connection without an
extension parses and makes its data frames itself; one with permessage-deflate never does.
Both echo every size class, a fragmented message and a ping the same way."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest
from websockets.asyncio.client import connect

from lang.wire.connection import WebSocket
from lang.wire.fastframe import FrameParser
from lang.wire.frames import Limits
from lang.wire.server import ServerOptions, accept

T = 30  # seconds: the hard limit on any wait in this file

MESSAGES: list[str | bytes] = [m for n in (0, 1, 125, 126, 65_535, 65_536, 300_000)
                               for m in ("é" * (n // 2) + "x" * (n % 2), b"\x07" * n)]


async def echo_through_evt(compression: bool) -> dict[str, Any]:
    """Serve one websockets client with an echo on lang.wire; what the server's connection
    was like once the traffic was through, and how it closed."""
    seen: dict[str, Any] = {}
    finished = anyio.Event()
    opts = ServerOptions(compression=compression, limits=Limits(close_timeout=T))

    async def serve(stream: anyio.abc.ByteStream) -> None:
        ws: WebSocket = await accept(stream, opts, "test")

        async def echo(message: str | bytes) -> None:
            seen["fast"] = ws.fast  # as it stands while messages arrive
            await ws.send(message)

        seen["plain"] = ws.plain
        seen["closed"] = await ws.run(echo)
        finished.set()

    with anyio.fail_after(T):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None, max_size=None,
                               compression="deflate" if compression else None) as ws:
                for m in MESSAGES:
                    await ws.send(m)
                for m in MESSAGES:
                    assert await ws.recv() == m
                await ws.send(["frag", "men", "t"])
                assert await ws.recv() == "fragment"
                await (await ws.ping(b"hi"))
                await ws.send("after the ping")
                assert await ws.recv() == "after the ping"
                await ws.close(4000, "bye")
            await finished.wait()
            tg.cancel_scope.cancel()
    return seen


@pytest.mark.anyio
async def test_a_connection_without_extensions_takes_the_fast_path() -> None:
    seen = await echo_through_evt(compression=False)
    assert seen["plain"] is True
    assert isinstance(seen["fast"], FrameParser)
    assert (seen["closed"].code, seen["closed"].reason) == (4000, "bye")


@pytest.mark.anyio
async def test_a_deflate_connection_never_does() -> None:
    seen = await echo_through_evt(compression=True)
    assert seen["plain"] is False
    assert seen["fast"] is False
    assert (seen["closed"].code, seen["closed"].reason) == (4000, "bye")
