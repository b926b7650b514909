"""SPEC §11: many connections from one declaration (`open NAME [with MAP]`, handles,
`connections()`, `stop NAME`), against `websockets` servers and clients on 127.0.0.1.

What a peer saw is recorded by its handler and asserted in the test body. Every wait has a
hard limit (T); no test times anything."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from helpers import ROOT, free_port, run_evt
from helpers.server import client, serving
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on any wait in this file


@asynccontextmanager
async def ws_server(handler: Callable[[ServerConnection], Awaitable[None]]
                    ) -> AsyncIterator[int]:
    async with serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        yield server.sockets[0].getsockname()[1]


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


# ---------------------------------------------------------------- handles


async def test_open_makes_handles_with_their_own_url_headers_and_fields(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    async def greet(ws: ServerConnection) -> None:
        seen.append((ws.request.path, ws.request.headers.get("x-user")))
        await echo(ws)

    async with ws_server(greet) as port:
        r = await run_evt(f"""
            connection up {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{
                let c = open up
                let d = open up with {{url: "ws://127.0.0.1:{port}/feed", headers: {{"x-user": "ana"}}}}
                c.tag = "first"
                print type(c), c.id, d.id, c.name, c.url, d.url, c.tag, d.tag
                print connected(c), connected(d), c == d, c == c, connections(up) == [c, d]
                print address(c) == c.remote, subprotocol(c), c.subprotocol, type(c.headers)
                send d "to d"
                expect d as m within 20s
                send c "to c"
                expect c as m2 within 20s
                print m, m2
                close c
                print connected(c), connections(up) == [d], c.tag
                send c "late"
                stop up
                print connected(d), len(connections(up))
            }}
            on websocket error up as e from c {{ print "error", c.id, e }}
            on websocket stop up as info from c {{ print "stop", c.id, info.code }}
        """, tmp_path=tmp_path, timeout=T)
    assert r.code == 0, r.err
    lines = r.lines
    assert lines[0] == f"connection 1 2 up ws://127.0.0.1:{port}/ ws://127.0.0.1:{port}/feed first null"
    assert lines[1] == "true true false true true"
    assert lines[2] == "true null null map"
    assert lines[3] == "to d to c"
    assert lines[4] == "false true first"
    assert "error 1 up#1: not connected" in lines
    assert "false 0" in lines
    assert sorted(x for x in lines if x.startswith("stop")) == ["stop 1 1000", "stop 2 1000"]
    assert sorted(seen) == [("/", None), ("/feed", "ana")]


async def test_the_started_connection_is_a_handle_among_the_opened_ones(tmp_path: Path) -> None:
    async with ws_server(echo) as port:
        r = await run_evt(f"""
            connection up {{ url = "ws://127.0.0.1:{port}/" }}
            let other = null
            on project start {{
                start up
                wait until connected(up) within 20s
                other = open up
                print up.id, other.id, up.name, connections(up) == [up, other]
                send up "a"
                send other "b"
            }}
            let got = 0
            on websocket receive up as m from c {{
                print "from", c.id, c == up, m
                got = got + 1
                if got == 2 {{ stop up }}
            }}
        """, tmp_path=tmp_path, timeout=T)
    assert r.code == 0, r.err
    assert r.lines[0] == "1 2 up true"
    assert sorted(r.lines[1:]) == ["from 1 true a", "from 2 false b"]


async def test_a_failed_open_returns_a_handle_and_fires_the_error_event(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    r = await run_evt(f"""
        connection up {{ url = "ws://127.0.0.1:{port}/"; connect_timeout = 20s }}
        on project start {{
            let c = open up
            c.why = "test"
            print "opened", c.id, connected(c), len(connections(up))
        }}
        on websocket error up as e from c {{ print "error", c.id, c.why, starts_with(e, "up#1: ") }}
    """, tmp_path=tmp_path, timeout=T)
    assert r.code == 0, r.err
    assert r.lines == ["opened 1 false 0", "error 1 test true"]


async def test_open_with_reconnect_goes_on_trying_in_the_background(tmp_path: Path) -> None:
    port = free_port()  # the server comes once the script says its first attempt failed
    source = f"""
        connection up {{ url = "ws://127.0.0.1:{port}/"; reconnect = true; reconnect_min = 50ms
                        reconnect_max = 200ms; connect_timeout = 20s }}
        let c = null
        on project start {{
            c = open up
            print "first attempt:", connected(c), len(connections(up))
        }}
        on websocket error up as e from c {{ print "PROBE failed" }}
        on websocket start up from c {{ print "connected", c.id; send c "hi" }}
        on websocket receive up as m from c {{ print "got", m; stop up }}
    """
    async with serving(source, tmp_path) as run:
        await run.wait_output("PROBE failed")
        async with serve(echo, "127.0.0.1", port, ping_interval=None):
            await run.wait(T)
    res = run.result
    assert res.code == 0, res.err
    assert res.lines[0] == "first attempt: false 1"
    assert "connected 1" in res.lines and "got hi" in res.lines


# ---------------------------------------------------------------- checks


async def test_open_is_checked_before_anything_runs(tmp_path: Path) -> None:
    r = await run_evt("""
        connection up { url = "ws://127.0.0.1:9/" }
        server edge { listen = "127.0.0.1:0" }
        on project start {
            let a = open edge
            let b = open upp
            let c = open up with {urll: "ws://x/"}
            let d = open up with {reconnect: "yes"}
            let e = open up with [1]
        }
    """, tmp_path=tmp_path)
    assert r.code == 3
    assert "'open' needs a connection; 'edge' is a server" in r.err
    assert "unknown connection 'upp'; did you mean 'up'?" in r.err
    assert "unknown connection key 'urll'; did you mean 'url'?" in r.err
    assert re.search(r"test.evt:8:\d+: error: .*reconnect", r.err)
    assert "'open ... with' needs a map of connection keys" in r.err


async def test_a_computed_with_map_is_judged_when_it_runs(tmp_path: Path) -> None:
    r = await run_evt("""
        connection up { url = "ws://127.0.0.1:9/" }
        on project start {
            let keys = {urll: "ws://x/"}
            let c = open up with keys
        }
        on project stop { print "went on" }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert "test.evt:5:" in r.err and "unknown connection key 'urll'" in r.err
    assert "Traceback" not in r.err
    r = await run_evt("""
        connection up { url = "ws://127.0.0.1:9/" }
        on project start { let n = 5; let c = open up with n }
    """, tmp_path=tmp_path)
    assert r.code == 1 and "'open up with' needs a map of connection keys, got int" in r.err


# ---------------------------------------------------------------- the §11 bridge

BRIDGE = (ROOT / "examples" / "bridge.evt").read_text(encoding="utf-8")


def bridge_source(upstream_port: int) -> str:
    source = BRIDGE.replace('let listen = "127.0.0.1:8080"', 'let listen = "127.0.0.1:0"')
    source = source.replace('let upstream = "ws://127.0.0.1:9000"',
                            f'let upstream = "ws://127.0.0.1:{upstream_port}"')
    assert 'listen = "127.0.0.1:0"' in source and str(upstream_port) in source
    return source


class Upstream:
    """A `websockets` echo server that records, per connection path, what it received
    (with its frame type), the x-forwarded-for header, and when the connection ended."""

    def __init__(self) -> None:
        self.received: dict[str, list[str | bytes]] = {}
        self.forwarded: dict[str, str | None] = {}
        self.ended: dict[str, anyio.Event] = {}
        self.conns: dict[str, ServerConnection] = {}

    async def __call__(self, ws: ServerConnection) -> None:
        path = ws.request.path
        self.received[path] = []
        self.forwarded[path] = ws.request.headers.get("x-forwarded-for")
        self.ended.setdefault(path, anyio.Event())
        self.conns[path] = ws
        try:
            async for msg in ws:
                self.received[path].append(msg)
                await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            self.ended[path].set()


async def test_the_bridge_gives_each_client_its_own_upstream(tmp_path: Path) -> None:
    up = Upstream()
    for i in range(3):
        up.ended[f"/c{i}?k={i}"] = anyio.Event()
    async with ws_server(up) as up_port, serving(bridge_source(up_port), tmp_path) as run:
        url = await run.url("edge")
        sent: dict[int, list[str | bytes]] = {i: [] for i in range(3)}
        got: dict[int, list[str | bytes]] = {i: [] for i in range(3)}
        closes: dict[int, tuple[int | None, str | None]] = {}

        async def one(i: int, ready: anyio.Event) -> None:
            async with client(f"{url.rstrip('/')}/c{i}?k={i}") as ws:
                for k in range(30):
                    msg: str | bytes = f"client {i} text {k}" if k % 2 == 0 else bytes([i, k, 0])
                    sent[i].append(msg)
                    await ws.send(msg)
                    if k % 3 == 0:  # interleaved: a few in flight, then the replies
                        while len(got[i]) < len(sent[i]):
                            with anyio.fail_after(T):
                                got[i].append(await ws.recv())
                while len(got[i]) < len(sent[i]):
                    with anyio.fail_after(T):
                        got[i].append(await ws.recv())
                ready.set()
                if i == 0:
                    await ws.close(1000, "done")  # a client's close closes its upstream
                else:
                    try:
                        with anyio.fail_after(T):
                            await ws.recv()
                    except ConnectionClosed as e:
                        closes[i] = (e.rcvd.code if e.rcvd else None,
                                     e.rcvd.reason if e.rcvd else None)

        async with anyio.create_task_group() as tg:
            ready = [anyio.Event() for _ in range(3)]
            for i in range(3):
                tg.start_soon(one, i, ready[i])
            with anyio.fail_after(T):
                for ev in ready:
                    await ev.wait()
                await up.ended["/c0?k=0"].wait()  # client 0 closed: its upstream closed
                for i in (1, 2):  # an upstream's close closes its client
                    await up.conns[f"/c{i}?k={i}"].close(1000, "upstream done")
        for i in range(3):
            assert got[i] == sent[i], f"client {i} got its messages once, in order, typed"
            assert up.received[f"/c{i}?k={i}"] == sent[i]
            assert up.forwarded[f"/c{i}?k={i}"] == "127.0.0.1"
        assert closes == {1: (1001, "upstream closed"), 2: (1001, "upstream closed")}
        async with client(url) as ws:  # the bridge goes on serving
            await ws.send("again")
            with anyio.fail_after(T):
                assert await ws.recv() == "again"
        run.rt.done.set()
    res = run.result
    assert "Traceback" not in res.err and "error" not in res.out, res.out + res.err
    assert "peer 1 > client 0 text 0" in res.out or "peer 2 > client 0 text 0" in res.out \
        or "peer 3 > client 0 text 0" in res.out


async def test_a_greeting_sent_at_once_finds_the_fields_set_after_open(tmp_path: Path) -> None:
    """The upstream speaks first, as soon as its handshake is done: the bridge's handler for
    it reads `c.client`, which the opener sets on the line after `open`."""

    async def greeter(ws: ServerConnection) -> None:
        await ws.send(f"welcome to {ws.request.path}")
        await echo(ws)

    async with ws_server(greeter) as up_port, serving(bridge_source(up_port), tmp_path) as run:
        url = await run.url("edge")
        for n in range(5):
            async with client(f"{url.rstrip('/')}/room{n}") as ws:
                with anyio.fail_after(T):
                    assert await ws.recv() == f"welcome to /room{n}"
                await ws.send("x")
                with anyio.fail_after(T):
                    assert await ws.recv() == "x"
        run.rt.done.set()
    assert "Traceback" not in run.result.err and "error" not in run.result.out


async def test_an_unreachable_upstream_closes_the_client_with_1011(tmp_path: Path) -> None:
    async with serving(bridge_source(free_port()), tmp_path) as run:
        url = await run.url("edge")
        async with client(url) as ws:
            with pytest.raises(ConnectionClosed) as info:
                with anyio.fail_after(T):
                    await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "upstream unavailable")
        run.rt.done.set()
    assert "Traceback" not in run.result.err


# ---------------------------------------------------------------- -v and --trace


async def test_verbose_and_trace_name_the_instance(tmp_path: Path) -> None:
    async with ws_server(echo) as port:
        r = await run_evt(f"""
            connection up {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{
                let a = open up
                let b = open up
                send b "hi"
                expect b as m within 20s
                stop up
            }}
        """, tmp_path=tmp_path, verbose=True, trace=True, timeout=T)
    assert r.code == 0, r.err
    assert "up#1: connecting to" in r.err and "up#2: connected to" in r.err
    assert 'up#2 > text "hi"' in r.err and 'up#2 < text "hi"' in r.err


def test_conns_lists_every_instance() -> None:
    from helpers.run import run_cli

    r = run_cli(["repl"], input='server s { listen = "127.0.0.1:0" }\n'
                'connection up { url = "ws://${address(s)}/" }\n'
                'start s\nlet c = open up\nlet d = open up\n:conns\nstop up\n:conns\n:quit\n')
    assert r.code == 0, r.err
    lines = [x for x in r.out.splitlines() if not x.startswith("s: server")]
    assert lines[0] == "up: connection, idle"
    assert re.fullmatch(r"up#1: connection, open ws://127\.0\.0\.1:\d+/ \(remote 127\.0\.0\.1:\d+\)",
                        lines[1]), lines
    assert lines[2].startswith("up#2: connection, open ws://127.0.0.1:")
    assert lines[3] == "up: connection, idle"
    assert "2 peers" in r.out


# ---------------------------------------------------------------- out of descriptors


async def test_running_out_of_file_descriptors_is_an_error_event(tmp_path: Path) -> None:
    """With a hard limit of 40 descriptors, 100 opens: those that get no socket fire
    `on websocket error` ("too many open files"); the rest work; no traceback, exit 0."""
    import resource
    import subprocess
    import sys

    from helpers import ENV_FOR_CLI, default_signals

    def low_limit() -> None:
        default_signals()
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    async with ws_server(echo) as port:
        path = tmp_path / "fd.evt"
        path.write_text(f"""
connection up {{ url = "ws://127.0.0.1:{port}/" }}
let failed = 0
on project start {{
    for i in range(100) {{ open up }}
    wait until failed + len(connections(up)) == 100 within 120s
    for c in connections(up) {{
        send c "still works"
        expect c as m within 60s
    }}
    print "open:", len(connections(up)) > 0, "failed:", failed > 0
    stop up
}}
on websocket error up as e from c {{
    if contains(lower(e), "too many open files") {{ failed = failed + 1 }} else {{ print e }}
}}
""", encoding="utf-8")
        done = await anyio.to_thread.run_sync(lambda: subprocess.run(
            [sys.executable, "-m", "lang", "run", str(path)], env=ENV_FOR_CLI,
            preexec_fn=low_limit, capture_output=True, text=True, timeout=T * 4))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["open: true failed: true"]
    assert "Traceback" not in done.stderr


async def test_many_round_trips_in_one_start_handler_do_not_stall(tmp_path: Path) -> None:
    """A start handler doing 300 `send`/`expect` round trips: each reply is also queued for
    the connection's (busy) source, so before the fix the reader stopped reading at
    max_queue (64) queued messages and the 65th `expect` waited for ever."""
    async with ws_server(echo) as port:
        r = await run_evt(f"""
            connection up {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{ open up; start up }}
            on websocket start up from c {{
                for n in range(300) {{
                    send c {{n: n}}
                    expect c json as reply where reply.n == n within 20s else {{
                        print "missed", n
                        exit 1
                    }}
                }}
                print "done", c.id
                close c
            }}
            let got = 0
            on websocket receive up as m from c {{ got = got + 1 }}
            on project stop {{ print "queued and handled:", got }}
        """, tmp_path=tmp_path, timeout=T * 2)
    assert r.code == 0, r.out + r.err
    assert sorted(r.lines[:2]) == ["done 1", "done 2"]
    assert r.lines[2] == "queued and handled: 600"
