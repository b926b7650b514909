"""examples/chat_cluster.evt as the README runs it: processes of one cluster on a real Redis,
clients on different processes talking in rooms."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import ROOT
from helpers.process import T, evt_process
from helpers.redis import Redis
from helpers.server import client, recv

pytestmark = pytest.mark.anyio

EXAMPLE = (ROOT / "examples" / "chat_cluster.evt").read_text(encoding="utf-8")


async def named(ws: Any, name: str) -> None:
    assert (await recv(ws)).startswith("* welcome (worker 0)!")
    await ws.send(name)
    assert await recv(ws) == f"* hello {name}; you are in lobby"


async def test_two_processes_share_their_rooms(tmp_path: Any, redis: Redis) -> None:
    opts = ("--set", f"redis={redis.url}", "--set", "listen=127.0.0.1:0")
    async with evt_process(tmp_path, EXAMPLE, *opts, name="a.evt") as a, \
            evt_process(tmp_path, EXAMPLE, *opts, name="b.evt") as b:
        async with client(await a.url("chat")) as ana, client(await b.url("chat")) as bob:
            await named(ana, "ana")
            await named(bob, "bob")
            assert await recv(ana) == "* bob joined lobby"  # from the other process
            await ana.send("hi")
            line = await recv(bob)
            if line == "* ana joined lobby":  # ana's join may have gone out after bob joined
                line = await recv(bob)
            assert line == "ana@lobby: hi"
            await bob.send("/join kitchen")
            assert await recv(bob) == "* you are in kitchen"
            assert await recv(ana) == "* bob left for kitchen"
            await ana.send("only the lobby hears this")
            await ana.send("/join kitchen")
            assert await recv(ana) == "* you are in kitchen"
            assert await recv(bob) == "* ana joined kitchen"  # and not the lobby line
            # the other process's count arrives with its next presence refresh (each second)
            with anyio.fail_after(T):
                while True:
                    await bob.send("/who")
                    answer = await recv(bob)
                    assert answer in ("* 1 online in the whole cluster",
                                      "* 2 online in the whole cluster")
                    if answer.startswith("* 2"):
                        break
                    await anyio.sleep(0.1)
        for p in (a, b):
            p.assert_clean_stderr()
