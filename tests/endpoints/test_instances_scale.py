"""SPEC §11 at scale, with evt in its own process and `websockets` peers in this one:
10,000 connections of one declaration at once, and 10,000 clients through the §11 bridge
leaving no upstream open, file descriptors back to where they were and memory flat.

Each needs about 10,100 file descriptors in this process (the peers) and in evt's (which
raises its own limit to the hard limit at start); with a lower hard limit they skip, saying
why. Waits are bounded (T); nothing is timed."""

from __future__ import annotations

import re
import resource
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from helpers import ROOT
from helpers.process import MiB, enough_descriptors, evt_process, mib
from helpers.server import client
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(1800)]  # bounded by T inside

T = 600  # seconds: the hard limit on the longest wait (10,000 handshakes on a busy machine)
N = 10_000


class CountingEcho:
    """A `websockets` echo handler that counts its connections (open now, most at once,
    all) and the messages it echoed."""

    def __init__(self) -> None:
        self.open_now = self.most = self.total = self.messages = 0
        self.seen: set[str | bytes] | None = None  # every message, when asked to keep them

    async def __call__(self, ws: ServerConnection) -> None:
        self.open_now += 1
        self.total += 1
        self.most = max(self.most, self.open_now)
        try:
            async for msg in ws:
                self.messages += 1
                if self.seen is not None:
                    self.seen.add(msg)
                await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            self.open_now -= 1


async def test_ten_thousand_connections_of_one_declaration(tmp_path: Path) -> None:
    enough_descriptors(N + 300)
    echo = CountingEcho()

    async with serve(echo, "127.0.0.1", 0, ping_interval=None, backlog=4096) as server:
        port = server.sockets[0].getsockname()[1]
        source = f"""
            let n = {N}
            let answered = 0
            connection user {{ url = "ws://127.0.0.1:{port}/"; connect_timeout = 300s }}
            on project start {{
                for i in range(n) {{
                    open user
                }}
                wait until answered == n within 600s else {{ print "answered", answered; exit 1 }}
                print "open at once:", len(connections(user))
                stop user
                print "after stop:", len(connections(user))
            }}
            on websocket start user from c {{
                send c "hello ${{c.id}}"
                expect c as reply within 300s
                if reply == "hello ${{c.id}}" {{ answered = answered + 1 }}
            }}
            on websocket error user as e from c {{ print "error", c.id, e }}
        """
        # evt starts with this process's usual limit and raises its own (SPEC §11)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, soft), hard))
        async with AsyncExitStack() as stack:
            try:
                child = await stack.enter_async_context(evt_process(tmp_path, source))
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert await child.exited(T) == 0, child.err.text[-3000:] + child.out.text[-3000:]
            child.assert_clean_stderr()
    assert child.out.text.splitlines() == [f"open at once: {N}", "after stop: 0"]
    assert echo.most == N and echo.messages == N and echo.open_now == 0


# the example as it is, with the handshakes given as long as the test's own waits: on a busy
# machine a handshake may take longer than the 10 s defaults (the upstream is in this process)
BRIDGE = (ROOT / "examples" / "bridge.evt").read_text(encoding="utf-8").replace(
    "server edge { listen = listen }",
    "server edge { listen = listen; handshake_timeout = 120s }").replace(
    'connection up { url = "${upstream}/" }',
    'connection up { url = "${upstream}/"; connect_timeout = 120s }')
assert BRIDGE.count("120s") == 2


async def test_ten_thousand_clients_through_the_bridge_leave_nothing_behind(tmp_path: Path
                                                                             ) -> None:
    enough_descriptors(300)
    echo = CountingEcho()
    echo.seen = set()

    async with serve(echo, "127.0.0.1", 0, ping_interval=None, backlog=1024) as server:
        up_port = server.sockets[0].getsockname()[1]
        async with evt_process(tmp_path, BRIDGE, "--set",
                               "listen=127.0.0.1:0", "--set",
                               f"upstream=ws://127.0.0.1:{up_port}") as child:
            url = await child.url("edge")
            done = 0

            async def cycles(count: int, lane: int, tag: str) -> None:
                nonlocal done
                for k in range(count):
                    # each cycle's path and message are unique in the whole test, so that
                    # `stuck` finds this cycle's lines and not an earlier one's
                    async with client(f"{url}lane{lane}?c={tag}{k}", open_timeout=120,
                                      close_timeout=120) as ws:
                        text = f"{tag}{lane}:{k}"
                        msg: str | bytes = text if k % 2 else text.encode()
                        await ws.send(msg)
                        with anyio.move_on_after(120):
                            assert await ws.recv() == msg
                            done += 1
                            continue
                        raise AssertionError(stuck(lane, f"{tag}{k}", msg))

            def stuck(lane: int, k: str, msg: str | bytes) -> str:
                """What evt and the upstream saw of a message whose echo never came."""
                out = child.out.text
                found = re.findall(rf"^peer (\d+) \S+ <-> up#(\d+) \S+/lane{lane}\?c={k}$",
                                   out, re.M)
                peer, up = found[-1] if found else ("?", "?")
                mine = [line for line in out.splitlines()
                        if line.startswith((f"peer {peer} ", f"up#{up}:"))]
                return (f"lane {lane}, cycle {k}: no echo of {msg!r} within 120 s; the "
                        f"upstream {'got' if msg in (echo.seen or ()) else 'never got'} it; "
                        f"{echo.open_now} upstreams open; evt's lines for peer {peer}/up#{up}: "
                        f"{mine[-6:]}; stderr: {child.err.text[-1500:]}")

            async def run(total: int, tag: str) -> None:
                lanes = 20
                with anyio.fail_after(T):
                    async with anyio.create_task_group() as tg:
                        for lane in range(lanes):
                            tg.start_soon(cycles, total // lanes, lane, tag)

            async def settled(fds: int | None) -> int:
                """Wait (bounded) until no upstream is open and, given a count, evt holds
                that many descriptors again; evt's descriptors now."""
                with anyio.move_on_after(T):
                    while echo.open_now or (fds is not None and child.fds() > fds):
                        await anyio.sleep(0.05)
                assert echo.open_now == 0, f"{echo.open_now} upstreams still open"
                return child.fds()

            await run(1_000, "w")  # warm-up: whatever is made once is made now
            fds = await settled(None)
            rss = child.rss()
            await run(N - 1_000, "m")
            assert done == N and echo.total == N
            assert await settled(fds) == fds, "evt holds the descriptors it held before"
            grown = child.rss() - rss
            assert grown < 10 * MiB, f"memory grew by {mib(grown)} over {N - 1000} cycles"
            code, _ = await child.terminate()
        assert code == 143, child.err.text[-3000:]
        child.assert_clean_stderr()
    assert echo.open_now == 0
