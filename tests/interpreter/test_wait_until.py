"""`wait until COND [within D] [else { }]` (SPEC §18): the condition is judged when the
statement starts and again after every event of the program; on timeout the else block runs,
or, with none, a runtime error. `until`, `within` and `end` stay usable as names.

A wait that must end because its condition came true uses `within 600s`, beyond run_evt's
hard limit: if the condition were not judged again, the test fails on that limit, never on
the statement's own timeout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import run_evt
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def test_it_goes_on_once_a_timer_block_made_the_condition_true(tmp_path: Path) -> None:
    r = await run_evt("""
        let n = 0
        on project start {
            after 50ms { n = 1 }
            wait until n == 1 within 600s
            print "n is", n
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["n is 1"]


async def test_a_true_condition_does_not_wait_even_within_zero(tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            let xs = [1]
            wait until len(xs) == 1 within 0s
            print "went on"
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["went on"]


async def test_it_is_judged_after_each_event_of_another_source(tmp_path: Path) -> None:
    # a repeating timer is another source: each of its runs is an event
    r = await run_evt("""
        let ticks = 0
        on project start {
            let t = every 10ms { ticks = ticks + 1 }
            wait until ticks >= 3 within 600s
            cancel t
            print "ticks", ticks >= 3
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["ticks true"]


async def test_wait_until_connected_needs_no_start_handler(tmp_path: Path) -> None:
    """SPEC §18's example: a connection opening is an event, with or without a handler."""
    async with echo_server() as port:
        r = await run_evt(f"""
            connection echo {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{
                start echo
                print "connected now:", connected(echo)
                wait until connected(echo) within 600s
                send echo "hello"
            }}
            on websocket receive echo as m {{
                print "got", m
                stop echo
            }}
        """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["connected now: false", "got hello"]


async def test_wait_until_a_connection_closed(tmp_path: Path) -> None:
    async with echo_server() as port:
        r = await run_evt(f"""
            connection echo {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{
                start echo
                wait until connected(echo) within 600s
                close echo 1000
                wait until not connected(echo) within 600s
                print "closed"
            }}
        """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["closed"]


async def test_on_timeout_the_else_block_runs(tmp_path: Path) -> None:
    started = time.monotonic()
    r = await run_evt("""
        on project start {
            wait until false within 200ms else {
                print "gave up"
            }
            print "and went on"
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["gave up", "and went on"]
    assert time.monotonic() - started >= 0.2  # the timer guarantees the lower bound


async def test_on_timeout_without_else_it_is_a_runtime_error_and_the_program_goes_on(
        tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            wait until false within 100ms
            print "not reached"
        }
        on project start {
            print "the next handler runs"
        }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ["the next handler runs"]
    assert ("test.evt:3:5: runtime error: wait until timed out after 0.1s (the condition "
            "was still false)") in r.err
    assert "in on project start" in r.err and "Traceback" not in r.err


async def test_the_default_timeout_is_ten_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    r = await run_evt("""
        on project start {
            wait until false else { print "gave up" }
        }
    """, tmp_path=tmp_path, timeout=60)
    assert r.lines == ["gave up"]
    assert time.monotonic() - started >= 10


async def test_an_error_in_the_condition_is_a_runtime_error_at_it(tmp_path: Path) -> None:
    r = await run_evt("""
        let m = {}
        on project start {
            wait until m.ready within 1s else { print "no" }
        }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert r.out == ""
    assert "test.evt:4:18: runtime error:" in r.err and "ready" in r.err


async def test_within_needs_a_duration(tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            wait until true within "soon"
        }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert "wait until ... within needs a duration (seconds, e.g. 250ms or 2s), got string" \
        in r.err


async def test_in_a_function_and_with_the_else_on_its_own_line(tmp_path: Path) -> None:
    r = await run_evt("""
        let n = 0
        func ready(limit) {
            wait until n > 0 within limit
            else { return "timed out" }
            return "ready ${n}"
        }
        on project start {
            print ready(50ms)
            after 10ms { n = 2 }
            print ready(600s)
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["timed out", "ready 2"]


async def test_exit_while_a_handler_waits_ends_the_program(tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            after 20ms { exit 0 }
            wait until false within 600s
            print "not reached"
        }
        on project stop { print "stopped" }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["stopped"]


async def test_several_handlers_wait_at_once(tmp_path: Path) -> None:
    r = await run_evt("""
        let go = false
        on event a { wait until go within 600s; print "a" }
        on project start {
            after 10ms { emit a null }
            after 10ms { emit b null }
            after 30ms { go = true }
        }
        on event b { wait until go within 600s; print "b" }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert sorted(r.lines) == ["a", "b"]


async def test_until_within_and_end_are_still_names(tmp_path: Path) -> None:
    r = await run_evt("""
        let until = 10ms
        let end = "e"
        let within = {until: 1, end: 2}
        func f(until, end) { return until + end }
        on project start {
            wait until                       # a variable named until: wait 10ms
            wait (until)
            wait until until > 0 within until
            print until, end, within.until, within.end, f(1, 2)
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["0.01 e 1 2 3"]


async def test_the_checker_sees_inside_wait_until(tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            wait until redy within 1s else { print nme }
        }
    """, tmp_path=tmp_path)
    assert r.code == 3
    assert "unknown name 'redy'" in r.err and "unknown name 'nme'" in r.err
