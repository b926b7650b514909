"""SPEC §16's cluster bus against a real Redis (Debian's redis-server on a free port) with
real evt processes and `websockets` clients: broadcasts and room broadcasts crossing
processes, a process with no member of a room reading none of its traffic (counted by its
`cluster_received` metric), `publish`/`on message` everywhere (this process too), the
envelopes as `redis-cli` reads them, `cluster_peers` across processes and a killed
process's peers dropped after its TTL, and Redis killed and restarted: what could not be
published is counted and reported, and the subscriptions come back."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import anyio
import pytest
from helpers.process import T, evt_process
from helpers.redis import Redis
from helpers.server import client, recv

pytestmark = pytest.mark.anyio

CHAT = """\
    cluster { url = args[0]; presence_ttl = 1s; connect_timeout = 20s }
    server chat { listen = "127.0.0.1:0" }
    on project start { start chat }
    on websocket start chat from p { send p "hi" }
    on websocket receive chat as m from p {
        let w = split(m, " ")
        let verb = w[0]
        if verb == "join" { join p w[1]; send p "joined ${w[1]}" }
        if verb == "all" { broadcast chat w[1] except p }
        if verb == "room" { broadcast chat w[2] to w[1] }
        if verb == "bin" { broadcast chat binary w[1] }
        if verb == "pub" { publish "news" {text: w[1], n: 1} }
        if verb == "stats" {
            send p {received: metric("cluster_received", "count"), peers: cluster_peers(chat)}
        }
    }
    # every process runs it: each tells its own peers (a broadcast would reach the whole
    # cluster from each process)
    on message "news" as v { for q in peers(chat) { send q "news ${v.text} ${v.n}" } }
    on cluster error as e { print "cluster error:", e }
"""


async def joined(ws: Any, room: str) -> None:
    await ws.send(f"join {room}")
    assert await recv(ws) == f"joined {room}"


async def stats(ws: Any) -> dict:
    await ws.send("stats")
    return json.loads(await recv(ws))


def chat(tmp_path: Any, url: str, name: str) -> Any:
    """The chat script as one process of the cluster at `url`."""
    return evt_process(tmp_path, CHAT, name=name, args=(url,))


async def test_broadcasts_rooms_and_publish_cross_processes(tmp_path: Any, redis: Redis) -> None:
    async with chat(tmp_path, redis.url, "a.evt") as a, chat(tmp_path, redis.url, "b.evt") as b:
        ua, ub = await a.url("chat"), await b.url("chat")
        async with client(ua) as a1, client(ua) as a2, client(ub) as b1:
            for ws in (a1, a2, b1):
                assert await recv(ws) == "hi"
            await joined(a1, "red")
            await joined(b1, "blue")
            before = await stats(a2)

            await b1.send("all hello")  # every peer of every process but the sender
            assert await recv(a1) == "hello"
            assert await recv(a2) == "hello"
            await b1.send("bin raw")
            for ws in (a1, a2, b1):
                assert await recv(ws) == b"raw"
            await a2.send("room red r1")  # red's only member is in this process
            assert await recv(a1) == "r1"
            await a2.send("room blue b1")  # blue's is in the other
            assert await recv(b1) == "b1"
            await b1.send("pub x")  # on message runs in both processes, b's own too
            for ws in (a1, a2, b1):
                assert await recv(ws) == "news x 1"
            after = await stats(a2)
            # what process a read from Redis: b's "all", "bin" and "pub" (3), and its own
            # "room red" echo (1); never blue's traffic, which has no member here
            assert after["received"] - before["received"] == 4, (before, after)
        for p in (a, b):
            p.assert_clean_stderr()


async def until(check: Any, what: str, timeout: float = T) -> Any:
    """Ask `check()` again (every 50 ms) until it gives a true value, for at most `timeout`."""
    last = None
    with anyio.move_on_after(timeout):
        while True:
            last = await check()
            if last:
                return last
            await anyio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


async def test_cluster_peers_across_processes_and_a_killed_one_drops(tmp_path: Any,
                                                                     redis: Redis) -> None:
    async with chat(tmp_path, redis.url, "a.evt") as a, chat(tmp_path, redis.url, "b.evt") as b:
        ua, ub = await a.url("chat"), await b.url("chat")
        async with client(ua) as a1, client(ua) as a2, client(ub) as b1:
            for ws in (a1, a2, b1):
                assert await recv(ws) == "hi"

            async def peers_seen_by_a() -> int:
                return (await stats(a1))["peers"]
            await until(lambda: _equals(peers_seen_by_a, 3), "a seeing 3 peers")
            assert (await stats(b1))["peers"] in (1, 3)  # b's own exactly; a's within a second
            b.proc.send_signal(signal.SIGKILL)  # no goodbye: its presence key stays to its TTL
            killed = time.monotonic()
            await until(lambda: _equals(peers_seen_by_a, 2), "a dropping b's peer")
            print(f"a dropped the killed process's peer after {time.monotonic() - killed:.2f} s "
                  f"(presence_ttl 1 s)")
        a.assert_clean_stderr()


async def _equals(read: Any, value: Any) -> bool:
    return await read() == value


async def test_redis_killed_and_restarted(tmp_path: Any, redis: Redis) -> None:
    async with chat(tmp_path, redis.url, "a.evt") as a, chat(tmp_path, redis.url, "b.evt") as b:
        ua, ub = await a.url("chat"), await b.url("chat")
        async with client(ua) as a1, client(ub) as b1, client(ub) as b2:
            for ws in (a1, b1, b2):
                assert await recv(ws) == "hi"
            await joined(a1, "red")
            await joined(b2, "blue")
            await b1.send("room red before")
            assert await recv(a1) == "before"

            redis.kill()
            await a.out.wait_for(r"^cluster error: the bus at redis://127\.0\.0\.1:\d+/0 is "
                                 r"unreachable")
            await b.out.wait_for(r"^cluster error: ")
            for i in range(3):  # 6 cannot be published: counted; local delivery goes on
                await b1.send(f"room red lost{i}")
                await b1.send(f"room blue local{i}")
                assert await recv(b2) == f"local{i}"
            redis.start()  # the same port
            restarted = time.monotonic()
            await b.err.wait_for(r"^evt: cluster: the bus at redis://127\.0\.0\.1:\d+/0 is back; "
                                 r"6 messages could not be published while it was down$")
            await a.err.wait_for(r"^evt: cluster: the bus at .* is back$")
            print(f"both processes back {time.monotonic() - restarted:.2f} s after the restart")
            await b1.send("room red after")  # a's room subscription came back
            assert await recv(a1) == "after"
            await b1.send("all everyone")
            assert await recv(a1) == "everyone"  # and its server channel
        for p in (a, b):
            p.assert_clean_stderr()


async def test_envelopes_as_redis_cli_reads_them(tmp_path: Any, redis: Redis) -> None:
    async with chat(tmp_path, redis.url, "a.evt") as a:
        url = await a.url("chat")
        async with client(url) as a1:
            assert await recv(a1) == "hi"
            sub = await anyio.to_thread.run_sync(redis.subscriber, "evt:room:chat:red",
                                                 "evt:server:chat", "evt:topic:news")
            try:
                await a1.send("room red hello")
                await a1.send("bin raw")
                await a1.send("pub x")
                got = [await anyio.to_thread.run_sync(sub.next_message) for _ in range(3)]
            finally:
                sub.close()
    by_channel = {channel: json.loads(data) for channel, data in got}
    room = by_channel["evt:room:chat:red"]
    assert {k: room[k] for k in ("kind", "server", "room", "except", "binary", "payload")} == {
        "kind": "broadcast", "server": "chat", "room": "red", "except": None, "binary": False,
        "payload": "hello"}
    assert len(room["origin"]) == 16
    whole = by_channel["evt:server:chat"]
    assert whole["binary"] is True and whole["payload"] == "cmF3" and whole["room"] is None
    news = by_channel["evt:topic:news"]
    assert news["kind"] == "publish" and news["payload"] == {"text": "x", "n": 1}


async def test_no_bus_at_start_is_an_error_event_and_local_delivery_goes_on(tmp_path: Any) -> None:
    from helpers import free_port, run_evt

    r = await run_evt(f"""\
        cluster {{ url = "redis://127.0.0.1:{free_port()}/0"; connect_timeout = 5s }}
        server chat {{ listen = "127.0.0.1:0" }}
        connection c {{ url = "ws://${{address(chat)}}/" }}
        on project start {{ start chat; start c }}
        on websocket start chat from p {{ join p "r"; broadcast chat "local" to "r" }}
        on websocket receive c as m {{ print "got", m, cluster_peers(chat); publish "t" 1 }}
        on message "t" as v {{ print "message", v; exit 0 }}
    """, tmp_path=tmp_path)
    assert r.out == "got local 1\nmessage 1\n", r.err
    assert "cluster error: the bus at redis://127.0.0.1:" in r.err
    assert "is unreachable" in r.err and "Traceback" not in r.err
    assert "2 messages could not be published" in r.err  # the broadcast and the publish


async def test_wait_until_hears_the_other_processes_counts(tmp_path: Any, redis: Redis) -> None:
    # a change of the others' peer counts is an event: `wait until` judges its condition again
    watcher = """\
        cluster { url = args[0]; presence_ttl = 1s }
        server chat { listen = "127.0.0.1:0" }
        on project start {
            start chat
            print "waiting"
            wait until cluster_peers(chat) == 1 within 30s
            print "seen", cluster_peers(chat)
            exit 0
        }
    """
    async with evt_process(tmp_path, watcher, name="w.evt", args=(redis.url,)) as w, \
            chat(tmp_path, redis.url, "b.evt") as b:
        await w.out.wait_for("^waiting$")
        async with client(await b.url("chat")) as b1:
            assert await recv(b1) == "hi"
            assert await w.exited() == 0, w.err.text
    assert "seen 1" in w.out.text


async def test_hostile_envelopes_are_dropped(tmp_path: Any, redis: Redis) -> None:
    # anyone who can reach Redis can publish on our channels: what is not a well-formed
    # envelope is dropped; the bus reads on and nothing is reported as a bug of ours
    async with chat(tmp_path, redis.url, "a.evt") as a:
        async with client(await a.url("chat")) as a1:
            assert await recv(a1) == "hi"
            for channel, data in (
                    ("evt:server:chat", "not json"),
                    ("evt:server:chat", "[1, 2]"),
                    ("evt:server:chat", "[" * 100_000 + "]" * 100_000),
                    ("evt:server:chat", '{"kind": "broadcast", "server": "chat", '
                                        '"payload": "\\ud800", "origin": "x"}'),
                    ("evt:server:chat", '{"kind": "broadcast", "server": "nope", '
                                        '"payload": "x", "origin": "x"}'),
                    ("evt:server:chat", '{"kind": "broadcast", "server": "chat", "binary": '
                                        'true, "payload": "not base64!", "origin": "x"}'),
                    ("evt:topic:news", '{"kind": "publish", "topic": "news", '
                                       '"payload": {"text": "\\udfff"}, "origin": "x"}'),
                    ("evt:server:chat", '{"kind": "broadcast", "server": "chat", '
                                        '"payload": "still here", "origin": "x"}')):
                redis.command("PUBLISH", channel, data)
            assert await recv(a1) == "still here"
            await a1.send("pub ok")  # and publish still works after all that
            assert await recv(a1) == "news ok 1"
        a.assert_clean_stderr()
        assert "cluster error" not in a.out.text
