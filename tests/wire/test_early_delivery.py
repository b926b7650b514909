"""Messages handed to a WebSocket's sink from the read itself (lang.wire.connection `_early`,
lang.wire.direct's `early`, lang.wire.fastframe's `whole`), and what evt does with that
(lang.endpoints.channel: an `expect` woken without a trip through the reader's task).

- `FrameParser.whole(data)` gives what `take(data)` would, or None and leaves the parser as
  it was (the same streams fed both ways, both roles, every kind of frame and cut);
- over real TCP, a peer's messages come to the sink when it is ready and to the awaited
  callback when it is not, or when a read holds more than whole simple frames (a ping, a
  fragmented message, a frame cut across reads): all of them, once each, in order;
- the sink engages (the test fails if it quietly stops doing so);
- an evt script's round trips with `expect`, with a short `within` that times out between
  long ones (the one alarm a connection keeps for its deadlines)."""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.abc
import pytest
from helpers import run_evt
from websockets.asyncio.server import ServerConnection, serve

from lang.wire.client import ClientOptions, connect
from lang.wire.fastframe import FrameParser, frame
from lang.wire.frames import Limits

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on any wait in this file


def _stream(rng: random.Random, to_client: bool) -> bytes:
    """A few frames as a peer sends them: text, binary, non-ASCII text, and sometimes a
    ping, a fragmented message, a cut, bad UTF-8."""
    data = b""
    for i in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.3:
            m: str | bytes = "x" * rng.randint(0, 200)
        elif kind < 0.5:
            m = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        elif kind < 0.6:
            m = "é" * rng.randint(0, 70)
        elif kind < 0.7:
            m = "y" * rng.randint(126, 70_000)
        else:
            m = f"ok{i}"
        data += frame(m, not to_client)
    roll = rng.random()
    if roll < 0.15:
        data = data[:rng.randint(1, len(data))]
    elif roll < 0.25:
        data += b"\x89\x00" if to_client else b"\x89\x80\x00\x00\x00\x00"  # a ping
    elif roll < 0.3:
        data += b"\x01\x01a" if to_client else b"\x01\x81\x00\x00\x00\x00a"  # a fragment
    elif roll < 0.35 and to_client and len(data) > 3:
        data = b"\x81\x02\xff\xfe"  # not UTF-8
    return data


@pytest.mark.parametrize("client", [True, False])
def test_whole_is_take_or_nothing(client: bool) -> None:
    rng = random.Random(14)
    for _ in range(3000):
        data = _stream(rng, client)
        a, b = FrameParser(client, 1 << 20), FrameParser(client, 1 << 20)
        got = a.whole(data)
        want = b.take(data)
        if got is not None:
            assert want[1] is None and not b.receiving and got == want[0]
        else:  # nothing changed: take() still gives what it gives from the start
            assert a.take(data) == want
        assert a.take(b"") == b.take(b"")


class Sink:
    """A MessageSink that takes messages while `ready`; what it and the callback got."""

    def __init__(self) -> None:
        self.ready = True
        self.got: list[tuple[str, str | bytes]] = []
        self.changed = anyio.Event()

    def ready_now(self) -> bool:
        return self.ready

    def take_now(self, message: str | bytes) -> None:
        self._got("sink", message)

    async def callback(self, message: str | bytes) -> None:
        self._got("reader", message)

    def _got(self, how: str, message: str | bytes) -> None:
        self.got.append((how, message))
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, n: int) -> None:
        with anyio.fail_after(T):
            while len(self.got) < n:
                await self.changed.wait()


async def test_messages_go_to_the_sink_or_the_callback_in_order() -> None:
    sent: list[str | bytes] = []
    go = anyio.Event()

    async def peer(ws: ServerConnection) -> None:
        async for msg in ws:  # each word from the client says what to send back
            if msg == "plain":
                out: list[Any] = [f"p{len(sent)}", b"\x00\x01"]
            elif msg == "ping":
                await ws.ping(b"x")
                out = ["after a ping"]
            elif msg == "fragments":
                out = [["fr", "ag"], "whole"]
            else:
                out = ["y" * 300_000]  # cut across reads
            for m in out:
                sent.append("".join(m) if isinstance(m, list) else m)
                await ws.send(m)
            go.set()

    async with serve(peer, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        with anyio.fail_after(T):
            ws = await connect(ClientOptions(url=f"ws://127.0.0.1:{port}/",
                                             limits=Limits(max_message=1 << 20)))
        sink = Sink()
        ws.sink = sink
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.run, sink.callback)
            for word in ("plain", "ping", "plain", "fragments", "big", "plain", "plain"):
                if word == "plain" and len(sent) > 6:
                    sink.ready = not sink.ready  # the sink refuses reads for a while
                n = len(sent)
                go = anyio.Event()
                await ws.send(word)
                with anyio.fail_after(T):
                    await go.wait()
                await sink.wait_for(len(sent))
                assert len(sent) > n
            await ws.close()
            tg.cancel_scope.cancel()
    assert [m for _, m in sink.got] == sent
    assert ("sink", "p0") in sink.got, "the sink never took a read"
    assert ("reader", "y" * 300_000) in sink.got  # (a frame cut across reads)
    assert ws.messages_in == len(sent)


async def test_round_trips_and_a_short_expect_that_times_out_between_them(tmp_path: Any
                                                                          ) -> None:
    r = await run_evt("""
        let url = ""
        server s { listen = "127.0.0.1:0" }
        on websocket receive s as m from p { send p m }
        connection c { url = url }
        on project start {
            start s
            url = "ws://${address(s)}/"
            open c
        }
        on websocket start c from k {
            for i in range(3) {
                send k {n: i}
                expect k json as m where m.n == i within 20s
                print "got", m.n
            }
            send k "unanswered"
            expect k as m where m == "never" within 200ms else { print "timed out" }
            for i in range(3, 5) {
                send k {n: i}
                expect k json as m where m.n == i within 20s
                print "got", m.n
            }
            exit 0
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.err.startswith("s: listening on ") and r.err.count("\n") == 1, r.err
    assert r.lines == ["got 0", "got 1", "got 2", "timed out", "got 3", "got 4"]
