"""SPEC §16's rooms in one process (no cluster), against real `websockets` clients: `join`,
`leave`, `rooms(P)`, `broadcast S MSG to ROOM [except P]`, a peer leaving its rooms when it
closes; `publish` without a cluster runs this process's `on message` handlers; runtime errors
for what is not a peer or not a room name (the program goes on); the check errors; and the new
words staying usable as names (`let join = 1`, `join(xs, ",")`)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import run_cli, run_evt, write
from helpers.server import T, client, recv, serving

pytestmark = pytest.mark.anyio

ROOMS = """\
    server srv { listen = "127.0.0.1:0" }
    on project start { start srv }
    on websocket start srv from p { send p "id ${p.id}" }
    on websocket receive srv as m from p {
        let w = split(m, " ")
        let verb = w[0]
        if verb == "join" { join p w[1]; send p "rooms ${json_stringify(rooms(p))}" }
        if verb == "leave" { leave p w[1]; send p "rooms ${json_stringify(rooms(p))}" }
        if verb == "to" { broadcast srv w[2] to w[1] }
        if verb == "others" { broadcast srv w[2] to w[1] except p }
        if verb == "all" { broadcast srv binary w[1] }
        if verb == "pub" { publish "news" {from: p.id, text: w[1]} }
        if verb == "bad" { join p len(m) }
        if verb == "notpeer" { let s = srv; join s "x" }
        if verb == "end" { stop srv }
    }
    on websocket stop srv from p { print "closed", p.id, json_stringify(rooms(p)) }
    on message "news" as v { print "news", v.from, v.text, type(v) }
"""


async def say(ws: Any, text: str) -> None:
    await ws.send(text)


async def test_join_leave_and_room_broadcasts(tmp_path: Any) -> None:
    async with serving(ROOMS, tmp_path) as run:
        url = await run.url("srv")
        async with client(url) as a, client(url) as b, client(url) as c:
            for ws in (a, b, c):
                assert (await recv(ws)).startswith("id ")
            await say(a, "join red")
            assert await recv(a) == 'rooms ["red"]'
            await say(a, "join blue")
            assert await recv(a) == 'rooms ["red","blue"]'
            await say(a, "join red")  # twice: still once in it, in the order first joined
            assert await recv(a) == 'rooms ["red","blue"]'
            await say(b, "join red")
            assert await recv(b) == 'rooms ["red"]'

            await say(c, "to red hello")  # c is in no room: only a and b
            assert await recv(a) == "hello"
            assert await recv(b) == "hello"
            await say(b, "others red x")  # except the sender
            assert await recv(a) == "x"
            await say(c, "to blue bleu")
            assert await recv(a) == "bleu"
            await say(c, "to nobody z")  # a room nobody is in: nothing, no error
            await say(a, "leave red")
            assert await recv(a) == 'rooms ["blue"]'
            await say(c, "to red second")
            assert await recv(b) == "second"
            await say(c, "all last")  # everyone, c too, as a binary frame
            for ws in (a, b, c):
                assert await recv(ws) == b"last"  # a got nothing between: "second" was not its
        with anyio.fail_after(T):
            while run.out.getvalue().count("closed") < 3:
                await anyio.sleep(0.02)
        run.rt.request_exit(0)
    out = run.result.out
    # a peer leaves its rooms when it closes: its stop handler sees none
    assert out.count("closed") == 3 and all(line.endswith("[]") for line in out.splitlines()
                                            if line.startswith("closed"))


async def test_publish_without_a_cluster_and_runtime_errors(tmp_path: Any) -> None:
    async with serving(ROOMS, tmp_path) as run:
        url = await run.url("srv")
        async with client(url) as a:
            await recv(a)
            await say(a, "pub hi")
            await run.wait_output("news")
            await say(a, "bad")
            await say(a, "notpeer")
            await say(a, "join red")  # the program went on after both errors
            assert await recv(a) == 'rooms ["red"]'
        run.rt.request_exit(0)
    r = run.result
    assert "news 1 hi map" in r.out  # as any process gets it: after a JSON round trip
    assert "'join' needs a room name (a non-empty string), got int" in r.err
    assert "'join' needs a peer, got server" in r.err
    assert "Traceback" not in r.err


async def test_words_stay_names(tmp_path: Any) -> None:
    r = await run_evt("""\
        let join = 1
        let to = 2
        let publish = 3
        let message = 4
        let cluster = 5
        func leave(x) { return x + 1 }
        on project start {
            print join + to + publish + message + cluster, leave(1), join(["a", "b"], "-")
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.out == "15 2 a-b\n"


def test_check_errors(tmp_path: Any) -> None:
    path = write(tmp_path, """\
        cluster { url = "http://x/"; prefix = ""; colour = 1 }
        cluster { url = "redis://127.0.0.1:6379/0" }
        server srv { listen = "127.0.0.1:0" }
        connection c { url = "ws://127.0.0.1:1/" }
        on websocket receive srv as m from p {
            join srv "a"
            leave c "a"
            join p ""
            broadcast srv m to 7
            publish "t" b"raw"
        }
    """)
    r = run_cli(["check", str(path)])
    assert r.code == 3
    for text in ("the cluster's 'url' must start with redis://, rediss:// or unix://",
                 "'prefix' cannot be empty", "unknown cluster key 'colour'",
                 "a program joins at most one cluster",
                 "'join' needs a peer (the one bound by 'from'); 'srv' is a server",
                 "'leave' needs a peer (the one bound by 'from'); 'c' is a connection",
                 "join: a room is a non-empty string, got an empty one",
                 "broadcast ... to: a room is a non-empty string, got int",
                 "publish takes a JSON value; bytes are not one"):
        assert text in r.err, r.err
    path = write(tmp_path, "on cluster error as e { print e }\n", name="noc.evt")
    r = run_cli(["check", str(path)])
    assert r.code == 3 and "'on cluster error' but the program declares no cluster" in r.err
