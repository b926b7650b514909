"""Issue 19's scale check: `evt run --workers N` (N = 2, 4) with a Redis cluster and 1,000
peers (`websockets` clients) spread over the workers by SO_REUSEPORT. Every peer receives
every broadcast exactly once and in order; a room broadcast reaches only its members, in
every worker; a worker with no member of a room reads none of that room's traffic from
Redis (its `cluster_received` counter does not move)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from helpers import free_port
from helpers.process import T, enough_descriptors, evt_process
from helpers.redis import Redis
from helpers.server import client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PEERS = 1000

SCRIPT = """\
    let port = 0
    cluster { url = args[0] }
    server chat { listen = "127.0.0.1:${port}"; max_clients = 5000 }
    on project start { start chat }
    on websocket start chat from p { send p "w ${worker()}" }
    on websocket receive chat as m from p {
        let w = split(m, " ")
        if w[0] == "join" { join p w[1]; send p "joined" }
        if w[0] == "all" { broadcast chat w[1] }
        if w[0] == "room" { broadcast chat w[2] to w[1] }
        if w[0] == "stats" { send p "stats ${metric('cluster_received', 'count')}" }
    }
"""


class Peer:
    def __init__(self, ws: Any, worker: int) -> None:
        self.ws = ws
        self.worker = worker
        self.got: list[str] = []
        self.more = anyio.Event()

    async def read(self) -> None:
        async for m in self.ws:
            self.got.append(m)
            self.more.set()
            self.more = anyio.Event()

    async def until(self, last: str) -> list[str]:
        """What it received up to and including `last` (then forgotten)."""
        with anyio.fail_after(T):
            while last not in self.got:
                await self.more.wait()
        at = self.got.index(last) + 1
        taken, self.got = self.got[:at], self.got[at:]
        return taken


async def _everyone(peers: list[Peer], last: str) -> list[list[str]]:
    results: list[list[str]] = [[] for _ in peers]

    async def one(i: int) -> None:
        results[i] = await peers[i].until(last)
    async with anyio.create_task_group() as tg:
        for i in range(len(peers)):
            tg.start_soon(one, i)
    return results


@pytest.mark.parametrize("workers", [2, 4])
async def test_workers_with_a_cluster_serve_1000_peers(tmp_path: Any, redis: Redis,
                                                       workers: int) -> None:
    enough_descriptors(4 * PEERS + 500)
    port = free_port()
    async with evt_process(tmp_path, SCRIPT, "--workers", str(workers), "--set",
                           f"port={port}", args=(redis.url,)) as evt:
        await evt.err.wait_for(r"listening on ws://127\.0\.0\.1:\d+/$", count=workers)
        url = f"ws://127.0.0.1:{port}/"
        peers: list[Peer] = []
        async with anyio.create_task_group() as tg:
            for _ in range(PEERS):
                ws = await client(url, max_queue=None).__aenter__()
                first = await ws.recv()
                peer = Peer(ws, int(first.split()[1]))
                peers.append(peer)
                tg.start_soon(peer.read)
            try:
                by_worker = {w: [p for p in peers if p.worker == w] for w in range(workers)}
                assert all(by_worker.values()), {w: len(ps) for w, ps in by_worker.items()}

                # every broadcast, from one peer, reaches every peer exactly once, in order
                sender = peers[0]
                for i in range(5):
                    await sender.ws.send(f"all m{i}")
                await sender.ws.send("all END")
                for got in await _everyone(peers, "END"):
                    assert got == ["m0", "m1", "m2", "m3", "m4", "END"]

                # a room: the even peers, in every worker
                members = peers[::2]
                for p in members:
                    await p.ws.send("join even")
                for p in members:
                    assert await p.until("joined") == ["joined"]
                await peers[1].ws.send("room even r1")
                await peers[1].ws.send("all END2")
                for i, got in enumerate(await _everyone(peers, "END2")):
                    assert got == (["r1", "END2"] if i % 2 == 0 else ["END2"]), (i, got)

                # a room with one member: the other workers read none of its traffic
                solo = by_worker[0][0]
                await solo.ws.send("join solo")
                assert await solo.until("joined") == ["joined"]
                askers = {w: ps[-1] for w, ps in by_worker.items()}

                async def received() -> dict[int, int]:
                    counts = {}
                    for w, p in askers.items():
                        await p.ws.send("stats")
                        counts[w] = await _stats(p)
                    return counts
                before = await received()
                speaker = by_worker[workers - 1][0]  # in another worker than solo's
                for i in range(5):
                    await speaker.ws.send(f"room solo s{i}")
                assert await solo.until("s4") == ["s0", "s1", "s2", "s3", "s4"]
                after = await received()
                for w in range(workers):
                    expected = 5 if w == 0 else 0
                    assert after[w] - before[w] == expected, (w, before, after)
            finally:
                with anyio.CancelScope(shield=True):
                    for p in peers:
                        with anyio.move_on_after(T):
                            await p.ws.close()
                tg.cancel_scope.cancel()
        code, _ = await evt.terminate()
        assert code in (0, 143), evt.err.text[-2000:]
        evt.assert_clean_stderr()


async def _stats(p: Peer) -> int:
    with anyio.fail_after(T):
        while not any(m.startswith("stats ") for m in p.got):
            await p.more.wait()
    line = next(m for m in p.got if m.startswith("stats "))
    p.got.remove(line)
    return int(json.loads(line.split()[1]))
