"""A receive handler that is one `send` back to the message's sender (`send p VALUE`: an
echo, a mock's answer) runs from the read itself (lang.interpreter.events `reply_of`,
`run_reply`; lang.endpoints.channel `take_now`; lang.wire.connection `_early`):

- which handlers are such replies, and which are not (another statement, another target, a
  function of the script in VALUE, a JSON event, a scene's handler);
- over real sockets with the `websockets` client: text, binary, non-ASCII and empty
  messages, pipelined and large (over the batch limit, with the client slow to read), all
  answered once each and in order, and through that path (the test fails if it stops
  engaging);
- a reply that fails is reported as any handler's failure, and serving goes on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers.server import client, recv, serving

import stdlib
from lang.interpreter.program import Runtime
from lang.syntax.loader import load

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on a single wait in this file

REPLY = """
    server srv {
        listen = "127.0.0.1:0"
    }
    on project start { start srv }
    on websocket receive srv as m from p {
        send p m
    }
    on websocket stop srv { stop srv }
"""


def _reply_of(tmp_path: Path, handler: str, extra: str = "") -> Any:
    path = tmp_path / "r.evt"
    path.write_text(f'server srv {{ listen = "127.0.0.1:0" }}\n{extra}\n{handler}\n',
                    encoding="utf-8")
    decls, problems = load(str(path))
    assert not problems, problems
    rt = Runtime(builtins=stdlib.load())
    rt.install(decls, None)
    handlers = [h for hs in rt.handlers.values() for h in hs]
    for scene in rt.scenes.values():
        handlers += [h for hs in scene.handlers.values() for h in hs]
    (h,) = [h for h in handlers if h.key == ("ws", "receive", "srv")]
    return h.reply


@pytest.mark.parametrize("handler, extra, is_reply", [
    ("on websocket receive srv as m from p { send p m }", "", True),
    ('on websocket receive srv as m from p { send p "got ${m}" }', "", True),
    ("on websocket receive srv as m from p { send p {n: len(m)} }", "", True),
    ("on websocket receive srv from p { send p \"pong\" }", "", True),
    ("on websocket receive srv as m from p { send p text m }", "", True),
    ("on websocket receive srv as m from p { print m; send p m }", "", False),
    ("on websocket receive srv as m from p { send p f(m) }", "func f(x) { return x }", False),
    ("on websocket receive srv json as m from p { send p m }", "", False),
    ("on websocket receive srv as m from p { send m m }", "", False),
    ("on websocket receive srv as m { send srv m }", "", False),
    ("on websocket receive srv as p from m { send m p }", "", True),
])
def test_which_handlers_are_replies(tmp_path: Path, handler: str, extra: str,
                                    is_reply: bool) -> None:
    assert (_reply_of(tmp_path, handler, extra) is not None) is is_reply


def test_a_scenes_handler_is_not_a_reply(tmp_path: Path) -> None:
    handler = "scene s { on websocket receive srv as m from p { send p m } }"
    assert _reply_of(tmp_path, handler) is None


def _count_replies(rt: Any) -> list[int]:
    """A spy on the runtime's run_reply: how often it ran (it still runs). How many of a
    pipelined stream's messages take that path depends on how TCP cuts the reads: only
    that it engages is asserted."""
    calls = [0]
    run_reply = rt.run_reply

    def counted(*args: Any) -> None:
        calls[0] += 1
        run_reply(*args)
    rt.run_reply = counted
    return calls


async def test_replies_in_order_from_the_read(tmp_path: Path) -> None:
    messages: list[str | bytes] = []
    for i in range(600):
        messages.append(f"m{i}" if i % 3 else bytes([i % 256]) * (i % 40))
        if i % 50 == 0:
            messages += ["", "héllo ✓ ☃", "x" * 100_000, b"\x00" * 300_000]
    async with serving(REPLY, tmp_path) as run:
        calls = _count_replies(run.rt)
        async with client(await run.url(), max_size=None) as ws:
            for i in range(20):  # one small message at a time: each read a whole frame
                await ws.send(f"one {i}")
                assert await recv(ws) == f"one {i}"
            assert calls[0] >= 1, calls  # the read's own path engages
            got: list[str | bytes] = []
            sent = anyio.Event()

            async def read() -> None:
                await sent.wait()  # the client reads late: the replies queue up
                for _ in messages:
                    got.append(await recv(ws))
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                with anyio.fail_after(T):
                    for i, message in enumerate(messages):  # pipelined
                        await ws.send(message)
                        if i == 40:
                            sent.set()
                sent.set()
            assert [type(m) for m in got] == [type(m) for m in messages]
            assert got == messages
    assert run.result.code == 0, run.result.err
    assert run.result.err.count("\n") == 1, run.result.err  # the listening line alone


async def test_a_failing_reply_is_reported_and_serving_goes_on(tmp_path: Path) -> None:
    source = """
        server srv {
            listen = "127.0.0.1:0"
        }
        on project start { start srv }
        on websocket receive srv as m from p {
            send p {n: 12 / (len(m) - 3)}
        }
        on websocket stop srv { stop srv }
    """
    async with serving(source, tmp_path) as run:
        calls = _count_replies(run.rt)
        async with client(await run.url()) as ws:
            for m in ["abcde", "abc", "abcdef"]:
                await ws.send(m)
            assert json.loads(await recv(ws)) == {"n": 6}
            assert json.loads(await recv(ws)) == {"n": 4}  # "abc" failed: no answer
            await ws.send("ab")
            assert json.loads(await recv(ws)) == {"n": -12}
    assert run.result.code == 1, run.result.err  # SPEC: errors make the exit code 1
    assert "runtime error: division by zero" in run.result.err, run.result.err
    assert "in on websocket receive srv" in run.result.err, run.result.err
    assert calls[0] >= 1, calls
