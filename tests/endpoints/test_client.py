"""evt scripts in the client role against independent servers on 127.0.0.1.

The peer is the `websockets` library (asyncio API) on the test's event loop, or, where a
server must misbehave (never answer a ping, never answer a close), a bare anyio TCP listener
that does the HTTP upgrade by hand and then only reads. Scripts name the server's port as
PORT; `script()` fills it in. What the peer saw is recorded by its handler and asserted in
the test body (an exception in a websockets handler would only be logged).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from helpers import free_port, run_evt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on any wait in this file
# An `expect` waiting for a message that comes uses `within 20s` (under run_evt's hard limit,
# so that a miss still shows its `else`); one that must give up for a reason other than its
# timeout uses `within 600s`, beyond the hard limit: giving up on the timer fails the test.


def script(source: str, port: int) -> str:
    return source.replace("PORT", str(port))


@asynccontextmanager
async def ws_server(handler: Callable[[ServerConnection], Awaitable[None]],
                    **kw: Any) -> AsyncIterator[int]:
    """A websockets server on 127.0.0.1, a free port; yields the port."""
    async with serve(handler, "127.0.0.1", 0, **kw) as server:
        yield server.sockets[0].getsockname()[1]


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)




class Recorder:
    """What a websockets handler saw: messages, how the connection closed, and events."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.request_headers: Any = None
        self.subprotocol: str | None = None
        self.closed = anyio.Event()

    async def record(self, ws: ServerConnection) -> None:
        """Read everything until the connection ends, then keep its close code."""
        try:
            async for msg in ws:
                self.messages.append(msg)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        self.close_code = ws.close_code
        self.close_reason = ws.close_reason
        self.closed.set()


# ---------------------------------------------------------------- messages


async def test_text_echo(tmp_path: Any) -> None:
    async with ws_server(echo) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { send c "hello ✓ ${1 + 1}" }
            on websocket receive c as m {
                print "got", type(m), m
                stop c
            }
            on websocket stop c as C { print "stop", C.code, C.reason == "", C.clean }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got string hello ✓ 2", "stop 1000 true true"]


async def test_binary_echo_stays_bytes(tmp_path: Any) -> None:
    seen: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            seen.append(msg)
            await ws.send(msg)

    async with ws_server(handler) as port:
        r = await run_evt(script(r"""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { send c b"\x00\xff\xc3(ok" }
            on websocket receive c as m {
                print type(m), m, len(m), hex(m)
                stop c
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert seen == [b"\x00\xff\xc3(ok"]
    assert r.lines == ['bytes b"\\x00\\xff\\xc3(ok" 6 00ffc3286f6b']


async def test_json_send_and_json_receive(tmp_path: Any) -> None:
    seen: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            seen.append(msg)
            await ws.send(json.dumps({"ok": True, "n": [10, 20.5], "echo": json.loads(msg)}))

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c {id: 7, op: "sub", "content-type": "x", args: [1, 2.5, null, true]}
            }
            on websocket receive c json as m {
                print type(m), m.ok, m.n[1], m.echo.op, m.echo["content-type"], m.echo.args
                stop c
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert len(seen) == 1 and type(seen[0]) is str  # JSON goes out as a text frame
    assert seen[0] == '{"id":7,"op":"sub","content-type":"x","args":[1,2.5,null,true]}'
    assert r.lines == ["map true 20.5 sub x [1, 2.5, null, true]"]


async def test_json_mode_with_a_message_that_is_not_json_fires_error(tmp_path: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        assert await ws.recv() == "ready"
        await ws.send("not json {")
        await ws.send('{"fine": 1}')
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { send c "ready" }
            on websocket receive c json as m { print "json", m.fine; stop c }
            on websocket error c as E { print "error", starts_with(E, "c: ") }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["error true", "json 1"]



async def test_json_mode_says_what_is_wrong_in_evt_words(tmp_path: Any) -> None:
    """Found in review: a binary frame of UTF-8-encoded surrogates became a string no send
    could take, NaN was taken, and the error said Python's words ("Expecting value: line 1
    column 1 (char 0)")."""
    async def handler(ws: ServerConnection) -> None:
        assert await ws.recv() == "ready"
        await ws.send(b'"\xed\xa0\x80"')
        await ws.send("[NaN]")
        await ws.send('"a\tb"')
        await ws.send("")
        await ws.send(b'\xef\xbb\xbf{"fine": 1}')
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { send c "ready" }
            on websocket receive c json as m { print "json", m.fine; stop c }
            on websocket error c as E { print E }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [
        "c: message is not JSON (not valid UTF-8 at byte 1)",
        "c: message is not JSON (NaN is not JSON (JSON has no nan or infinity))",
        "c: message is not JSON (a control character inside a string at line 1 column 3)",
        "c: message is not JSON (expected a value at line 1 column 1)",
        "json 1"]


async def test_text_and_binary_receive_modes(tmp_path: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        assert await ws.recv() == "ready"
        await ws.send("abc")
        await ws.send(b"h\xc3\xa9")
        await ws.send(b"bad \xff")
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            let n = 0
            on project start { start c }
            on websocket start c { send c "ready" }
            on websocket receive c text as t { print "text", type(t), t }
            on websocket receive c binary as b { print "binary", type(b), b }
            on websocket receive c as raw {
                n = n + 1
                if n == 3 { stop c }
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [
        "text string abc", 'binary bytes b"abc"',
        "text string hé", 'binary bytes b"h\\xc3\\xa9"',
        "text string bad \ufffd", 'binary bytes b"bad \\xff"',
    ]


async def test_send_forces_the_frame_type(tmp_path: Any) -> None:
    rec = Recorder()
    async with ws_server(rec.record) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c binary "x"
                send c text b"y"
                send c binary "é"
                send c binary {a: 1}
                send c text [1, "two"]
                send c 42
                send c "plain"
                stop c
            }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert rec.messages == [b"x", "y", "é".encode(), b'{"a":1}', '[1,"two"]', "42", "plain"]
    assert rec.close_code == 1000


async def test_headers_and_subprotocol_reach_the_server(tmp_path: Any) -> None:
    rec = Recorder()

    async def handler(ws: ServerConnection) -> None:
        rec.request_headers = ws.request.headers
        rec.subprotocol = ws.subprotocol
        await rec.record(ws)

    async with ws_server(handler, subprotocols=["chat.v1"]) as port:
        r = await run_evt(script("""
            connection c {
                url = "ws://127.0.0.1:PORT/feed?x=1"
                headers = {"X-Token": "abc 123", Authorization: "Bearer t0k"}
                subprotocols = ["chat.v2", "chat.v1"]
            }
            on project start { print "before", subprotocol(c); start c }
            on websocket start c {
                print "subprotocol", subprotocol(c), connected(c)
                stop c
            }
            on websocket stop c { print "after", subprotocol(c), connected(c) }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["before null", "subprotocol chat.v1 true", "after null false"]
    headers = rec.request_headers
    assert headers["X-Token"] == "abc 123"
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["Host"] == f"127.0.0.1:{port}"
    assert headers["Sec-WebSocket-Protocol"] == "chat.v2, chat.v1"
    assert rec.subprotocol == "chat.v1"


async def test_no_subprotocol_chosen_is_null(tmp_path: Any) -> None:
    async with ws_server(echo) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; subprotocols = ["x"] }
            on project start { start c }
            on websocket start c { print subprotocol(c); stop c }
        """, port), tmp_path=tmp_path)
    # websockets refuses a handshake that offers subprotocols it does not support only when
    # it is configured with some; with none configured it chooses none
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["null"]


# ---------------------------------------------------------------- expect


async def test_expect_sees_a_reply_that_raced_ahead_and_does_not_consume_it(tmp_path: Any
                                                                            ) -> None:
    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send({"one": "early", "ping": "pong"}.get(msg, "?"))

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c "one"
                expect c as e within 20s
                print "first", e
                send c "ping"
                wait 150ms           # the reply arrives while this handler is busy
                print "between"
                expect c as m within 20s else { print "missed" }
                print "second", m
                stop c
            }
            on websocket receive c as r { print "recv", r }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    # the receive handlers of c run after the start handler (one source), in order
    assert r.lines == ["first early", "between", "second pong", "recv early", "recv pong"]


async def test_expect_where_skips_messages_that_do_not_match(tmp_path: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            if msg == "go":
                for i in (1, 2, 3):
                    await ws.send(json.dumps({"id": i, "v": f"m{i}"}))

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            let seen = 0
            on project start { start c }
            on websocket start c {
                send c "go"
                expect c json as m where m.id == 2 within 20s
                print "expected", m.v
            }
            on websocket receive c json as r {
                print "recv", r.id
                seen = seen + 1
                if seen == 3 { stop c }
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["expected m2", "recv 1", "recv 2", "recv 3"]


async def test_expect_timeout_runs_else_with_null(tmp_path: Any) -> None:
    rec = Recorder()
    async with ws_server(rec.record) as port:
        t0 = time.monotonic()  # a lower bound only: the timer never fires early
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c "silence"
                expect c as m within 0.2s else { print "timeout", m }
                print "after", m
                stop c
            }
        """, port), tmp_path=tmp_path)
        elapsed = time.monotonic() - t0
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["timeout null", "after null"]
    assert elapsed >= 0.2


async def test_expect_timeout_without_else_is_a_runtime_error(tmp_path: Any) -> None:
    async with ws_server(Recorder().record) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c "silence"
                expect c as m within 0.2s
                print "unreachable"
            }
            on websocket start c {
                print "next handler"
                stop c
            }
        """, port), tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ["next handler"]
    assert "runtime error" in r.err
    assert "expect on c timed out after 0.2s" in r.err
    assert re.search(r"test\.evt:6:\d+: runtime error", r.err), r.err


async def test_expect_gives_up_when_the_connection_ends(tmp_path: Any) -> None:
    """lang/endpoints/channel.py evt_expect: (False, None) 'on timeout or when the channel ends'."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4000, "bye")

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c "x"
                expect c as m within 600s else { print "else", m, connected(c) }
            }
            on websocket stop c as C { print "stop", C.code }
        """, port), tmp_path=tmp_path)  # (its hard limit ends a wait for the timeout)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["else null false", "stop 4000"]



async def test_expect_right_after_start_waits_for_the_connection(tmp_path: Any) -> None:
    """SPEC §13's first example: `start api` then `expect api ...` at once. The connection
    is connecting from the `start` on (it said "expect on c: not connected" until the
    connection's task had run)."""

    async def greet(ws: ServerConnection) -> None:
        await ws.send("ready")
        await ws.wait_closed()

    async with ws_server(greet) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start {
                start c
                expect c as m within 20s
                print "got", m
                stop c
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got ready"]


async def test_expect_without_else_says_why_it_gave_up(tmp_path: Any) -> None:
    """It said "timed out after 2s" when the connection was never started, or closed
    while it waited: words that send the user looking at the wrong thing."""
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4000, "bye")

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            connection never { url = "ws://127.0.0.1:PORT/" }
            on project start {
                start c
                expect never as m within 600s
            }
            on websocket start c {
                send c "x"
                expect c as m within 600s
            }
        """, port), tmp_path=tmp_path)
    assert r.code == 1
    assert "runtime error: expect on never: not connected" in r.err
    assert "runtime error: expect on c: the connection closed before a matching message " \
        "came" in r.err
    assert "timed out" not in r.err



async def test_a_message_the_where_condition_cannot_judge_does_not_match(tmp_path: Any
                                                                        ) -> None:
    """Found in a user trial: a notification without "id" before the reply made
    `where r.id == 1` a runtime error that ended the handler (its `stop` never ran: the
    script hung). It does not match; an expect that gives up says what failed."""
    async def handler(ws: ServerConnection) -> None:
        assert await ws.recv() == "go"
        await ws.send('{"method": "notify"}')
        await ws.send('{"id": 1, "ok": true}')
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c {
                send c "go"
                expect c json as r where r.id == 1 within 20s else { print "else" }
                print "got", r
                expect c json as q where q.nope == 1 within 100ms else { print "else", q }
                stop c
                expect c json as z where z.nope == 1 within 100ms
            }
        """, port), tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ['got {"id": 1, "ok": true}', "else null"]
    assert ('runtime error: expect on c: not connected (the where condition failed on 1 '
            'message: no key "nope" in this map (keys: "method"))') in r.err, r.err


# ---------------------------------------------------------------- closing


async def test_server_close_code_and_reason_reach_the_stop_event(tmp_path: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4000, "bye")

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { send c "hi" }
            on websocket stop c as C {
                print C.code, C.reason, C.clean, type(C)
                print C
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["4000 bye true map", '{"code": 4000, "reason": "bye", "clean": true}']


async def test_stop_closes_with_1000(tmp_path: Any) -> None:
    rec = Recorder()
    async with ws_server(rec.record) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { stop c; print "stopped", connected(c) }
            on websocket stop c as C { print C.code, C.clean }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["stopped false", "1000 true"]
    assert (rec.close_code, rec.close_reason) == (1000, "")


async def test_close_with_code_and_reason_reaches_the_server(tmp_path: Any) -> None:
    rec = Recorder()
    async with ws_server(rec.record) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket start c { close c 4001, "x" }
            on websocket stop c as C { print C.code, C.clean }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert (rec.close_code, rec.close_reason) == (4001, "x")
    assert r.lines == ["4001 true"]  # websockets echoes the code back


# ---------------------------------------------------------------- reconnect


async def test_reconnect_to_a_restarted_server_on_the_same_port(tmp_path: Any) -> None:
    first_client = anyio.Event()
    second = Recorder()

    async def handler_a(ws: ServerConnection) -> None:
        first_client.set()
        await ws.wait_closed()

    server_a: Server = await serve(handler_a, "127.0.0.1", 0)
    port = server_a.sockets[0].getsockname()[1]
    server_b: Server | None = None

    async def restart() -> None:
        nonlocal server_b
        with anyio.fail_after(T):
            await first_client.wait()
            server_a.close()  # closes the listener, then the connection with 1001
            await server_a.wait_closed()
            server_b = await serve(second.record, "127.0.0.1", port)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(restart)
            r = await run_evt(script("""
                connection c {
                    url = "ws://127.0.0.1:PORT/"
                    reconnect = true
                    reconnect_min = 50ms
                    reconnect_max = 200ms
                }
                let starts = 0
                on project start { start c }
                on websocket start c {
                    starts = starts + 1
                    print "start", starts
                    if starts == 2 { stop c }
                }
                on websocket stop c as C { print "stop", C.code }
                on websocket error c as E { print "error", E }
            """, port), tmp_path=tmp_path)
            tg.cancel_scope.cancel()
    finally:
        server_a.close()
        if server_b is not None:
            server_b.close()
            await server_b.wait_closed()
    assert (r.code, r.err) == (0, "")
    assert [x for x in r.lines if not x.startswith("error")] == \
        ["start 1", "stop 1001", "start 2", "stop 1000"]
    refused = f"error c: connection refused (ws://127.0.0.1:{port}/)"
    assert all(x == refused for x in r.lines if x.startswith("error"))
    with anyio.fail_after(T):
        await second.closed.wait()
    assert second.close_code == 1000


# ---------------------------------------------------------------- errors


async def test_connection_refused_fires_the_error_event(tmp_path: Any) -> None:
    port = free_port()
    r = await run_evt(script("""
        connection c { url = "ws://127.0.0.1:PORT/" }
        on project start { start c }
        on websocket error c as E { print E }
        on websocket start c { print "never" }
        on websocket stop c { print "never" }
    """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"c: connection refused (ws://127.0.0.1:{port}/)"]


async def test_unhandled_connection_refused_goes_to_stderr_and_exit_1(tmp_path: Any) -> None:
    port = free_port()
    r = await run_evt(script("""
        connection c { url = "ws://127.0.0.1:PORT/" }
        on project start { start c; print "started" }
    """, port), tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ["started"]
    assert f"c: connection refused (ws://127.0.0.1:{port}/)" in r.err
    assert "test.evt:" in r.err


async def test_send_while_not_connected_fires_error_and_goes_on(tmp_path: Any) -> None:
    port = free_port()
    r = await run_evt(script("""
        connection c { url = "ws://127.0.0.1:PORT/" }
        on project start {
            send c "x"
            print "went on", connected(c)
        }
        on websocket error c as E { print "error", E }
    """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert sorted(r.lines) == ["error c: not connected", "went on false"]


async def test_message_over_max_message_fails_with_1009(tmp_path: Any) -> None:
    rec = Recorder()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"x" * (2 * 1024 * 1024))
        await rec.record(ws)

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket receive c as m { print "got", len(m) }
            on websocket error c as E { print "error", E }
            on websocket stop c as C { print "stop", C.code }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert rec.close_code == 1009
    assert r.lines == ["error c: message over 1048576 bytes; closing with 1009 (message too big)",
                       "stop 1009"]


# ---------------------------------------------------------------- misbehaving servers


class RawServer:
    """A TCP listener that completes the WebSocket upgrade by hand and then only reads:
    it never answers a ping nor a close frame. It keeps what it read after the upgrade."""

    def __init__(self, greeting: bytes = b"", headers: bytes = b"") -> None:
        self.greeting = greeting  # frames written in the same send as the 101 response
        self.headers = headers  # extra header lines of the 101 response, each with \r\n
        self.received = bytearray()
        self.eof = anyio.Event()
        self.port = 0

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            head, _, rest = request.partition(b"\r\n\r\n")
            key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head)
            assert key is not None
            accept = base64.b64encode(hashlib.sha1(
                key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            await stream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                              b"\r\n" + self.headers + b"\r\n" + self.greeting)
            self.received += rest
            try:
                while True:
                    self.received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.eof.set()

    def opcodes(self) -> list[int]:
        """The opcodes of the (masked) client frames received."""
        data, out, i = bytes(self.received), [], 0
        while i + 2 <= len(data):
            op, n = data[i] & 0x0F, data[i + 1] & 0x7F
            i += 2
            if n == 126:
                n = int.from_bytes(data[i:i + 2], "big")
                i += 2
            elif n == 127:
                n = int.from_bytes(data[i:i + 8], "big")
                i += 8
            i += 4 + n
            out.append(op)
        return out


@asynccontextmanager
async def raw_server(greeting: bytes = b"", headers: bytes = b"") -> AsyncIterator[RawServer]:
    srv = RawServer(greeting, headers)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    srv.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, srv.handle)
        try:
            yield srv
        finally:
            tg.cancel_scope.cancel()


async def test_server_that_never_answers_pings(tmp_path: Any) -> None:
    async with raw_server() as srv:
        r = await run_evt(script("""
            connection c {
                url = "ws://127.0.0.1:PORT/"
                ping_interval = 100ms
                ping_timeout = 100ms
                close_timeout = 200ms
            }
            on project start { start c }
            on websocket start c { print "started" }
            on websocket error c as E { print "error", E }
            on websocket stop c as C { print "stop", C.code, C.clean }
        """, srv.port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await srv.eof.wait()  # and then the client dropped TCP
    assert (r.code, r.err) == (0, "")
    # lang/wire/connection.py: a failed connection whose peer sends no close frame ends with our
    # code, 1011, not clean
    assert r.lines == ["started", "error c: no pong within 0.1s; closing with 1011 "
                       "(internal error)", "stop 1011 false"]
    assert srv.opcodes() == [0x9, 0x8]  # one ping, then the close frame


async def test_server_that_ignores_our_close(tmp_path: Any) -> None:
    async with raw_server() as srv:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; close_timeout = 200ms }
            on project start { start c }
            on websocket start c {
                let t0 = monotonic()
                stop c
                print "stopped", monotonic() - t0
            }
            on websocket stop c as C { print "stop", C.code, C.clean }
        """, srv.port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await srv.eof.wait()
    assert (r.code, r.err) == (0, "")
    assert len(r.lines) == 2
    word, seconds = r.lines[0].split()
    assert word == "stopped" and float(seconds) >= 0.15  # it waited for close_timeout
    assert r.lines[1] == "stop 1006 false"
    assert srv.opcodes() == [0x8]


async def test_greeting_in_the_same_segment_as_the_handshake_response(tmp_path: Any) -> None:
    """A server that speaks first: its first frames often share a TCP segment with the 101
    response. Here they are written in one send, so the client reads them together."""
    greeting = b"\x81\x07welcome" + b"\x82\x01\x01"  # unmasked text + binary frames
    async with raw_server(greeting) as srv:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; close_timeout = 100ms }
            on project start { start c }
            on websocket receive c as m {
                print "got", m
                if type(m) == "bytes" { stop c }
            }
        """, srv.port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got welcome", 'got b"\\x01"']



async def test_expect_in_the_start_handler_sees_a_greeting_that_came_first(
        tmp_path: Any) -> None:
    """Found in a user trial: the greeting came in the segment of the 101 response and was
    read before the start handler began; `expect` missed it (no handler was expecting yet,
    so nothing kept it), though the reference says a message that raced ahead is not
    missed. The handlers of a queued event see what arrived since the event happened."""
    greeting = b"\x81\x05hello" + b"\x81\x05begin" + b"\x81\x04next"
    async with raw_server(greeting) as srv:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; close_timeout = 100ms }
            on project start { start c }
            on websocket start c {
                expect c as hi within 20s else { print "missed the greeting" }
                print "start saw", hi
            }
            on websocket receive c as m {
                if m == "begin" {
                    expect c as n where n != "begin" within 20s else { print "missed next" }
                    print "receive saw", n
                    stop c
                }
            }
        """, srv.port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["start saw hello", "receive saw next"]



@pytest.mark.parametrize("answer, words", [
    (b"", "the server closed the connection during the handshake; is it a wss:// server?"),
    (b"\x15\x03\x03\x00\x02\x02\x46", "the server speaks TLS: use a wss:// url"),
])
async def test_a_ws_url_to_a_tls_server_says_so(tmp_path: Any, answer: bytes, words: str
                                                ) -> None:
    """Found in a user trial: ws:// to a wss:// server said only that the server closed the
    connection. A TLS server closes (Python's) or answers with a TLS alert record."""
    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            if answer:
                await stream.send(answer)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket error c as E { print E }
        """, port), tmp_path=tmp_path)
        tg.cancel_scope.cancel()
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"c: {words} (ws://127.0.0.1:{port}/)"]


class AnsweringServer(RawServer):
    """Sends a greeting with the 101 response, then waits for the client's first frame and
    only then sends "done": a client whose reply to the greeting is held back never gets it."""

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            head, _, rest = request.partition(b"\r\n\r\n")
            key = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)", head)
            assert key is not None
            accept = base64.b64encode(hashlib.sha1(
                key.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            await stream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                              b"\r\n\r\n" + self.greeting)
            self.received += rest
            while not self.opcodes():
                self.received += await stream.receive()
            await stream.send(b"\x81\x04done")
            try:
                while True:
                    self.received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.eof.set()


async def test_a_reply_to_a_frame_that_came_with_the_handshake_goes_out_at_once(
        tmp_path: Any) -> None:
    """Found by Autobahn (client role, case 1.1.1): a handler's reply to a frame read with
    the 101 response was queued for the reader's batched write and waited for the next
    read."""
    srv = AnsweringServer(b"\x81\x02hi")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    srv.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, srv.handle)
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; close_timeout = 100ms }
            on project start { start c }
            on websocket receive c as m {
                print "got", m
                if m == "done" { stop c } else { send c m }
            }
        """, srv.port), tmp_path=tmp_path)
        tg.cancel_scope.cancel()
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got hi", "got done"]
    assert srv.opcodes() == [0x1, 0x8]


# ---------------------------------------------------------------- tracing


async def test_trace_prints_frames_with_control_characters_escaped(tmp_path: Any) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send("\x1b[31mred\x1b[0m")
        await ws.send(b"\x1b[2J")
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            let n = 0
            on project start { start c }
            on websocket start c { send c "up\\x1b[1A" }
            on websocket receive c as m {
                n = n + 1
                if n == 2 { stop c }
            }
        """, port), tmp_path=tmp_path, trace=True)
    assert r.code == 0
    assert "\x1b" not in r.err and "\x1b" not in r.out
    lines = r.err.splitlines()
    assert any(x.startswith("c > text") and "up" in x for x in lines), r.err
    assert any(x.startswith("c < text") and "[31mred" in x for x in lines), r.err
    assert any(x.startswith("c < binary") and "[2J" in x for x in lines), r.err
    assert any(x.startswith("c > close") and "1000" in x for x in lines), r.err
    assert any(x.startswith("c < close") for x in lines), r.err


async def test_verbose_prints_the_lifecycle(tmp_path: Any) -> None:
    source = """
        connection c { url = "ws://127.0.0.1:PORT/" }
        on project start { start c }
        on websocket start c { stop c }
    """
    async with ws_server(echo) as port:
        quiet = await run_evt(script(source, port), tmp_path=tmp_path)
        loud = await run_evt(script(source, port), tmp_path=tmp_path, verbose=True)
    assert (quiet.code, quiet.err) == (0, "")
    assert loud.code == 0
    url = f"ws://127.0.0.1:{port}/"
    assert loud.err.splitlines() == [f"c: connecting to {url}", f"c: connected to {url}",
                                     "c: closed 1000 (OK)"]


# ---------------------------------------------------------------- found in review


@pytest.mark.parametrize("offer", ["permessage-deflate; server_max_window_bits=x",
                                   "permessage-deflate; client_max_window_bits=99"])
async def test_a_server_answering_bad_deflate_parameters_is_an_error_event(
        tmp_path: Any, offer: str) -> None:
    """wsproto int()s the parameters of the server's answer: a ValueError took the program
    down (RFC 7692 §5: the client fails the connection)."""
    async with raw_server(headers=f"Sec-WebSocket-Extensions: {offer}\r\n".encode()) as srv:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/"; compression = true }
            on project start { start c }
            on websocket start c { print "never" }
            on websocket error c as E { print "error", E }
        """, srv.port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"error c: bad handshake response: bad permessage-deflate parameters "
                       f"{offer!r} (ws://127.0.0.1:{srv.port}/)"]


@pytest.mark.parametrize("where", ["start", "receive"])
@pytest.mark.parametrize("reconnect", [False, True])
async def test_stop_then_start_makes_exactly_one_new_connection(
        tmp_path: Any, reconnect: bool, where: str) -> None:
    """`stop c` then `start c` at once: the second start was lost (reconnect = false), or a
    second connecting task ran beside the first one (reconnect = true), leaving a
    connection no `stop` could close. From `on websocket receive` the handler runs inside
    the connection's reader, which still has the close handshake to finish."""
    recorders: list[Recorder] = []

    async def handler(ws: ServerConnection) -> None:
        rec = Recorder()
        recorders.append(rec)
        await ws.send("hello")
        await rec.record(ws)

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c {
                url = "ws://127.0.0.1:PORT/"
                reconnect = RECONNECT
                reconnect_min = 10ms
                reconnect_max = 10ms
            }
            let starts = 0
            on project start { start c }
            on websocket start c {
                starts = starts + 1
                print "start", starts
                if starts == 1 and WHERE == "start" {
                    stop c
                    start c
                }
                if starts == 2 {
                    wait 200ms  # a second connecting task, if there were one, reconnects
                    stop c
                }
            }
            on websocket receive c as m {
                if starts == 1 and WHERE == "receive" {
                    stop c
                    start c
                }
            }
            on websocket stop c as C { print "stop", C.code, connected(c) }
            on websocket error c as E { print "error", E }
        """.replace("RECONNECT", str(reconnect).lower()).replace("WHERE", f'"{where}"'), port),
            tmp_path=tmp_path)
        with anyio.fail_after(T):
            for rec in recorders:
                await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["start 1", "stop 1000 false", "start 2", "stop 1000 false"]
    assert [rec.close_code for rec in recorders] == [1000, 1000]


@pytest.mark.parametrize("headers, problem", [
    ('{"X-A": "é€"}', "the value of 'X-A' must be printable ASCII"),
    ('{"X-A": "a\\r\\nX-Injected: 1"}', "the value of 'X-A' must be printable ASCII"),
    ('{"X A": "1"}', "'X A' is not a valid header name"),
])
async def test_bad_header_names_and_values_are_refused_not_a_crash(
        tmp_path: Any, headers: str, problem: str) -> None:
    """h11 refused them while the handshake was being written: a traceback. A literal is a
    check error; a computed one a runtime error of `start`, as for any key."""
    port = free_port()
    literal = await run_evt(script(f"""
        connection c {{ url = "ws://127.0.0.1:PORT/"; headers = {headers} }}
        on project start {{ start c }}
    """, port), tmp_path=tmp_path)
    assert literal.code == 3
    assert problem in literal.err and "Traceback" not in literal.err
    computed = await run_evt(script(f"""
        let h = {headers}
        connection c {{ url = "ws://127.0.0.1:PORT/"; headers = h }}
        on project start {{
            start c
            print "went on"
        }}
        on websocket error c as E {{ print "error", E }}
    """, port), tmp_path=tmp_path)
    assert computed.code == 1
    assert computed.lines == []
    assert "runtime error: connection c: 'headers': " + problem in computed.err
    assert "Traceback" not in computed.err


async def test_a_url_that_cannot_be_sent_is_an_error_event(tmp_path: Any) -> None:
    async with ws_server(echo) as port:
        r = await run_evt(script("""
            let path = "/a b"
            connection c { url = "ws://127.0.0.1:PORT" + path }
            on project start { start c }
            on websocket error c as E { print "error", E }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"error c: cannot make the handshake request: Illegal target "
                       f"characters (ws://127.0.0.1:{port}/a b)"]


async def test_keepalive_does_not_fail_a_peer_while_our_handlers_hold_reading_back(
        tmp_path: Any) -> None:
    """With max_queue messages waiting, reading pauses (backpressure): the pongs are not
    read, and keep-alive failed a healthy server with 1011. Each handler holds reading back
    for twice ping_timeout; ping_timeout is long enough for a busy machine's pong when
    reading goes on (at 50 ms, a late pong after the last message failed a healthy peer)."""
    rec = Recorder()

    async def handler(ws: ServerConnection) -> None:
        for i in range(5):
            await ws.send(str(i))
        await rec.record(ws)

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c {
                url = "ws://127.0.0.1:PORT/"
                ping_interval = 50ms
                ping_timeout = 300ms
                max_queue = 1
            }
            on project start { start c }
            on websocket receive c as m {
                wait 600ms
                print "got", m
                if m == "4" { stop c }
            }
            on websocket error c as E { print "error", E }
            on websocket stop c as C { print "stop", C.code }
        """, port), tmp_path=tmp_path)
        with anyio.fail_after(T):
            await rec.closed.wait()
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got 0", "got 1", "got 2", "got 3", "got 4", "stop 1000"]
    assert rec.close_code == 1000


async def test_ping_timeout_zero_is_a_check_error(tmp_path: Any) -> None:
    r = await run_evt("""
        connection c { url = "ws://127.0.0.1:9/"; ping_timeout = 0 }
        on project start { start c }
    """, tmp_path=tmp_path)
    assert r.code == 3
    assert "'ping_timeout' must be more than 0 (ping_interval = 0 turns keep-alive off)" \
        in r.err


async def test_no_receive_handler_starts_after_exit(tmp_path: Any) -> None:
    """Runtime.dispatch stops at `exit`; the receive path did not: the second handler ran,
    and so did the handlers of the next message."""
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.send("two")
        await ws.wait_closed()

    async with ws_server(handler) as port:
        r = await run_evt(script("""
            connection c { url = "ws://127.0.0.1:PORT/" }
            on project start { start c }
            on websocket receive c as m {
                print "got", m
                exit 5
            }
            on websocket receive c as m { print "second handler", m }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (5, "")
    assert r.lines == ["got one"]


async def test_durations_too_large_for_a_float_mean_never(tmp_path: Any) -> None:
    """A duration is an int or a float; pow(10, 400) made float() fail inside the task that
    connects (a traceback). It means "never", as for `after`; a size that large, no limit."""
    async with ws_server(echo, compression="deflate") as port:
        r = await run_evt(script("""
            let never = pow(10, 400)
            connection c {
                url = "ws://127.0.0.1:PORT/"
                connect_timeout = never
                ping_interval = never
                ping_timeout = never
                close_timeout = never
                reconnect_min = never
                reconnect_max = never
                max_message = never
                compression = true
            }
            on project start { start c }
            on websocket start c { send c repeat("compressed ", 100) }
            on websocket receive c as m {
                print "got", len(m)
                stop c
            }
            on websocket stop c as C { print "stop", C.code, C.clean }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got 1100", "stop 1000 true"]
