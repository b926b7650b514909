"""SPEC §15's handshake control and `ping`, against real `websockets` peers on 127.0.0.1:
`on websocket request` (reject with a status and body, a chosen subprotocol, response
headers, a field carried to the peer, an auth check that waits on another connection, a
handler error answered 500), configuration evaluated at every attempt (a refreshed token on
reconnect), and `ping` (a round trip; null when not connected or when no pong comes)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from helpers import run_cli, run_evt, write
from helpers.server import T, client, raw_upgrade, serving
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

pytestmark = pytest.mark.anyio

AUTH_SERVER = """\
    server srv { listen = "127.0.0.1:0"; subprotocols = ["v1"] }
    server auth { listen = "127.0.0.1:0" }
    on websocket receive auth as token from p { send p {ok: token == "good", user: "ana"} }
    connection check { url = "ws://${address(auth)}/" }

    on project start { start auth; start srv }

    on websocket request srv as R {
        let token = get(R.query, "token", "")
        if token == "" { reject 401, "no token" }
        if token == "boom" { let x = [1][3] }
        let c = open check
        send c token                          # an auth service: it may wait
        expect c json as answer within 20s
        close c
        if not answer.ok { reject 403, "bad token" }
        R.user = answer.user
        if "v2" in R.subprotocols { R.subprotocol = "v2" }
        R.response_headers = {"x-served-by": "evt"}
    }
    on websocket start srv from p { send p "hello ${p.user}, ${p.subprotocol}" }
"""


async def refused(url: str, **kw: Any) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as e:
        async with client(url, **kw):
            pass
    return e.value.response.status_code, bytes(e.value.response.body or b"")


async def test_request_handler_rejects_chooses_carries_and_waits(tmp_path: Any) -> None:
    async with serving(AUTH_SERVER, tmp_path) as run:
        url = await run.url("srv")
        assert await refused(url) == (401, b"no token\n")
        assert await refused(url + "?token=bad") == (403, b"bad token\n")
        async with client(url + "?token=good", subprotocols=["v2", "v1"]) as ws:
            assert ws.subprotocol == "v2"
            assert ws.response.headers["x-served-by"] == "evt"
            assert await ws.recv() == "hello ana, v2"
        async with client(url + "?token=good", subprotocols=["v1"]) as ws:
            assert ws.subprotocol == "v1"  # the server's own choice when the handler makes none
            assert await ws.recv() == "hello ana, v1"
        assert await refused(url + "?token=boom") == (500, b"the server's request handler "
                                                          b"failed\n")
        assert "runtime error" in run.err.getvalue()  # written before the 500 was sent
        run.rt.request_exit(0)
    r = run.result
    assert "index 3 out of range" in r.err or "out of range" in r.err
    assert "Traceback" not in r.err


def test_reject_outside_a_request_handler_is_a_check_error(tmp_path: Any) -> None:
    path = write(tmp_path, """\
        server srv { listen = "127.0.0.1:0" }
        connection c { url = "ws://127.0.0.1:1/" }
        on websocket start srv from p { reject 401 }
        func f() { reject 403, "no" }
        on websocket request c as R { }
        on websocket request srv as R { reject 200 }
        let reject = 1
        on project start { reject = reject + 1; print reject }
    """, "bad.evt")
    r = run_cli(["check", str(path)])
    assert r.code == 3
    assert r.err.count("'reject' works only in an 'on websocket request' handler") == 2
    assert "'on websocket request' works only on a server; 'c' is a connection" in r.err
    assert "reject takes an HTTP status from 400 to 599" in r.err
    assert "4 errors" in r.err


async def test_a_refreshed_token_is_sent_on_reconnect(tmp_path: Any) -> None:
    """401 → the error handler refreshes the token → the reconnect carries it (the
    configuration is evaluated at every attempt)."""
    seen: list[str | None] = []

    def process_request(ws: ServerConnection, request: Any) -> Response | None:
        token = request.headers.get("authorization")
        seen.append(token)
        if token != "Bearer fresh":
            return ws.respond(401, "expired\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.send("in")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        r = await run_evt(f"""
            let token = "stale"
            connection c {{
                url = "ws://127.0.0.1:{port}/"
                headers = {{authorization: "Bearer ${{token}}"}}
                reconnect = true
                reconnect_min = 10ms
            }}
            on project start {{ start c }}
            on websocket error c as e {{ print "error:", e; token = "fresh" }}
            on websocket receive c as m {{ print "got", m; stop c }}
        """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert seen == ["Bearer stale", "Bearer fresh"]
    assert r.lines[-1] == "got in"
    assert "401" in r.lines[0]


async def test_ping_gives_the_round_trip_or_null(tmp_path: Any) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        r = await run_evt(f"""
            let ping = 0                       # still a name where no target follows
            connection c {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{
                print "before:", ping c
                start c
                wait until connected(c) within 20s
                let rtt = ping c
                print type(rtt), rtt >= 0, ping + 1
                stop c
            }}
            on websocket stop c {{ print "after:", ping c; print metric("ws_ping", "count") }}
        """, tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["before: null", "float true 1", "after: null", "1"]


async def test_ping_is_null_when_no_pong_comes(tmp_path: Any) -> None:
    """A raw client that completed the handshake and never answers a ping."""
    async with serving("""
        server srv { listen = "127.0.0.1:0"; ping_interval = 0; ping_timeout = 200ms }
        on project start { start srv }
        on websocket start srv from p { print "ping:", ping p; exit }
    """, tmp_path) as run:
        stream = await raw_upgrade(await run.port("srv"))
        async with stream:
            with anyio.fail_after(T):
                await run.done.wait()
    assert run.result.lines == ["ping: null"]


async def test_a_custom_event_named_request_is_not_a_request(tmp_path: Any) -> None:
    """`on event request` is a custom event: its failure is an ordinary runtime error."""
    r = await run_evt("""
        on event request as v { let x = 1 / 0 }
        on project start { emit request 5; print "went on" }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ["went on"]
    assert "division by zero" in r.err and "internal error" not in r.err
