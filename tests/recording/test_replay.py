"""Recordings end to end (SPEC §14): `evt run --record` against a real `websockets` server,
then `evt replay --url` against it (and a changed one) and `evt replay --serve` to a real
`websockets` client; matching and pacing. Every peer is a real socket on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from helpers.run import ENV_FOR_CLI, run_cli, write
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.anyio
T = 60  # seconds: the hard limit of any wait here


@asynccontextmanager
async def ws_server(handler: Callable[[ServerConnection], Awaitable[None]]
                    ) -> AsyncIterator[int]:
    async with serve(handler, "127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


def service(greeting: str = "welcome", upper: bool = True) -> Callable[..., Awaitable[None]]:
    """The server recorded: greets, answers text upper-cased (or not: the changed one),
    binary reversed, closes with 4001 "done" on "bye"."""
    async def handler(ws: ServerConnection) -> None:
        await ws.send(greeting)
        async for msg in ws:
            if msg == "bye":
                await ws.close(4001, "done")
                return
            if isinstance(msg, bytes):
                await ws.send(msg[::-1])
            else:
                await ws.send(msg.upper() if upper else msg)
    return handler


CLIENT = """\
    let url = ""
    connection c { url = url }
    on project start { start c }
    on websocket start c {
        expect c as hello within 20s
        send c "hello"
        expect c as a within 20s
        send c b"\\x00\\x01\\x02"
        expect c binary as b within 20s
        send c "bye"
    }
    on websocket stop c as info { print "closed", info.code, info.reason }
"""


async def announced(proc: Any, words: str) -> str:
    """The URL an evt process names on stderr after `words` ("listening on", "replaying
    on"), once it has written it."""
    assert proc.stderr is not None
    seen = b""
    while words.encode() not in seen or not seen.split(words.encode(), 1)[1].strip():
        seen += await proc.stderr.receive()
    return seen.decode().split(words + " ", 1)[1].split()[0]


async def cli(*args: str) -> tuple[int, str, str]:
    with anyio.fail_after(T):
        proc = await anyio.run_process([sys.executable, "-m", "lang", *args], check=False,
                                       env=ENV_FOR_CLI)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def record(tmp_path: Path) -> Path:
    har = tmp_path / "rec.har"
    script = write(tmp_path, CLIENT, "client.evt")
    async with ws_server(service()) as port:
        code, out, err = await cli("run", "--record", str(har), "--set",
                                   f"url=ws://127.0.0.1:{port}/chat?room=1", str(script))
    assert code == 0, err
    assert out.splitlines() == ["closed 4001 done"]
    return har


async def test_record_writes_a_devtools_har(tmp_path: Path) -> None:
    har = await record(tmp_path)
    doc = json.loads(har.read_text())
    assert doc["log"]["version"] == "1.2"
    assert doc["log"]["creator"]["name"] == "evt"
    (entry,) = doc["log"]["entries"]
    assert entry["_resourceType"] == "websocket"
    assert entry["request"]["url"].endswith("/chat?room=1")
    assert entry["response"]["status"] == 101
    names = {h["name"].lower() for h in entry["response"]["headers"]}
    assert {"upgrade", "connection", "server"} <= names
    got = [(m["type"], m["opcode"], m["data"]) for m in entry["_webSocketMessages"]]
    assert got[:6] == [
        ("receive", 1, "welcome"), ("send", 1, "hello"), ("receive", 1, "HELLO"),
        ("send", 2, base64.b64encode(b"\x00\x01\x02").decode()),
        ("receive", 2, base64.b64encode(b"\x02\x01\x00").decode()), ("send", 1, "bye")]
    # the server began the close: its close frame, from the client's side a "receive"
    assert got[6][:2] == ("receive", 8)
    assert base64.b64decode(got[6][2]) == (4001).to_bytes(2, "big") + b"done"
    times = [m["time"] for m in entry["_webSocketMessages"]]
    assert times == sorted(times) and abs(times[0] - time.time()) < 3600


async def test_replay_url_passes_against_the_same_server_and_fails_against_a_changed_one(
        tmp_path: Path) -> None:
    har = await record(tmp_path)
    async with ws_server(service()) as port:
        code, out, err = await cli("replay", str(har), "--url",
                                   f"ws://127.0.0.1:{port}/chat?room=1")
    assert (code, out, err) == (0, "", "")
    async with ws_server(service(upper=False)) as port:
        code, out, err = await cli("replay", str(har), "--url",
                                   f"ws://127.0.0.1:{port}/chat?room=1")
    assert code == 1, out + err
    assert out.splitlines() == ['rec.har: message 3: expected "HELLO", got "hello"']
    async with ws_server(service(greeting="hi")) as port:
        code, out, _ = await cli("replay", str(har), "--url", f"ws://127.0.0.1:{port}")
    assert code == 1
    assert 'rec.har: message 1: expected "welcome", got "hi"' in out


async def test_replay_serve_is_the_recorded_server_to_a_real_client(tmp_path: Path) -> None:
    har = await record(tmp_path)
    with anyio.fail_after(T):
        async with await anyio.open_process(
                [sys.executable, "-m", "lang", "replay", str(har), "--serve", "127.0.0.1:0"],
                env=ENV_FOR_CLI) as proc:
            url = await announced(proc, "replaying on")
            for _ in range(2):  # many clients, each its own conversation
                async with websockets.connect(url + "chat?room=1") as ws:
                    assert await ws.recv() == "welcome"
                    await ws.send("hello")
                    assert await ws.recv() == "HELLO"
                    await ws.send(b"\x00\x01\x02")
                    assert await ws.recv() == b"\x02\x01\x00"
                    await ws.send("bye")
                    await ws.wait_closed()
                    assert (ws.close_code, ws.close_reason) == (4001, "done")
            async with websockets.connect(url + "chat") as ws:
                assert await ws.recv() == "welcome"
                await ws.send("not recorded")
                await ws.send("hello")  # a later message still gets its answer
                assert await ws.recv() == "HELLO"
                seen = b""
                while b"not recorded" not in seen:
                    seen += await proc.stderr.receive()
            proc.terminate()
            assert await proc.wait() == 0


HAR_JSON = {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"},
                    "entries": [{
                        "startedDateTime": "2026-12-06T10:00:00.000Z",
                        "request": {"method": "GET", "url": "ws://127.0.0.1:1/api",
                                    "headers": []},
                        "response": {"status": 101, "headers": []},
                        "_resourceType": "websocket",
                        "_webSocketMessages": [
                            {"type": "send", "time": 1000.0, "opcode": 1,
                             "data": '{"op": "get", "id": 1, "ts": 5}'},
                            {"type": "receive", "time": 1000.25, "opcode": 1,
                             "data": '{"id": 1, "ts": 6, "value": [1, {"ts": 7, "x": 2}]}'},
                            {"type": "receive", "time": 1000.5, "opcode": 1,
                             "data": "done"}]}]}}


async def test_match_json_ignores_the_named_keys(tmp_path: Path) -> None:
    har = tmp_path / "api.har"
    har.write_text(json.dumps(HAR_JSON))

    async def api(ws: ServerConnection) -> None:
        async for msg in ws:
            req = json.loads(msg)
            await ws.send(json.dumps({"value": [1, {"x": 2, "ts": 99}], "ts": 1234,
                                      "id": req["id"] + 100}))
            await ws.send("done")

    async with ws_server(api) as port:
        url = f"ws://127.0.0.1:{port}/api"
        code, out, _ = await cli("replay", str(har), "--url", url, "--match", "json",
                                 "--ignore", "id,ts")
        assert (code, out) == (0, "")
        code, out, _ = await cli("replay", str(har), "--url", url, "--match", "json",
                                 "--ignore", "ts")
        assert code == 1 and "message 2: expected" in out
        code, out, _ = await cli("replay", str(har), "--url", url)
        assert code == 1 and "message 2: expected" in out
        code, out, _ = await cli("replay", str(har), "--url", url, "--match", "any")
        assert (code, out) == (0, "")


async def test_pace_recorded_keeps_the_gaps(tmp_path: Path) -> None:
    har = tmp_path / "api.har"
    har.write_text(json.dumps(HAR_JSON))
    with anyio.fail_after(T):
        async with await anyio.open_process(
                [sys.executable, "-m", "lang", "replay", str(har), "--serve", "127.0.0.1:0",
                 "--pace", "recorded", "--match", "any"], env=ENV_FOR_CLI) as proc:
            url = await announced(proc, "replaying on")
            async with websockets.connect(url + "api") as ws:
                await ws.send("anything")
                sent = time.monotonic()
                await ws.recv()
                first = time.monotonic() - sent
                await ws.recv()
                second = time.monotonic() - sent
            proc.terminate()
            await proc.wait()
    # the recorded gaps were 0.25 s and 0.25 s: a timer guarantees the lower bounds
    assert first >= 0.25 - 0.005 and second >= 0.5 - 0.01
    print(f"--pace recorded: 0.25 s gaps kept as {first:.3f} s and {second - first:.3f} s")


@pytest.mark.parametrize("text", [
    "not json", "{}", '{"log": {}}', '{"log": {"entries": [1]}}', "[" * 100_000, ""])
async def test_a_file_that_is_not_a_recording_is_a_usage_error(tmp_path: Path,
                                                               text: str) -> None:
    har = tmp_path / "bad.har"
    har.write_text(text)
    for args in (["replay", str(har), "--url"], ["replay", str(har), "--serve", "127.0.0.1:0"],
                 ["codegen", str(har), "--serve"]):
        r = run_cli(args)
        assert r.code == 2, (args, r.err)
        assert r.err.startswith("evt: error: ") and "bad.har" in r.err
        assert "Traceback" not in r.err


async def test_a_recording_made_on_the_server_side_reads_from_the_clients_side(
        tmp_path: Path) -> None:
    """evt as the server, a `websockets` client: "send" is still what the client sent, and
    the file replays as a mock as one made on the client side does."""
    har = tmp_path / "server.har"
    script = write(tmp_path, """\
        server srv { listen = "127.0.0.1:0" }
        on project start { start srv }
        on websocket start srv from p { send p "welcome" }
        on websocket receive srv as m from p {
            if m == "bye" { close p 4001, "done" } else { send p upper(m) }
        }
        on websocket stop srv from p { exit }
    """, "server.evt")
    with anyio.fail_after(T):
        async with await anyio.open_process(
                [sys.executable, "-m", "lang", "run", "--record", str(har), str(script)],
                env=ENV_FOR_CLI) as proc:
            url = await announced(proc, "listening on")
            async with websockets.connect(url + "room") as ws:
                assert await ws.recv() == "welcome"
                await ws.send("hi")
                assert await ws.recv() == "HI"
                await ws.send("bye")
                await ws.wait_closed()
            assert await proc.wait() == 0
    (entry,) = json.loads(har.read_text())["log"]["entries"]
    assert entry["request"]["url"] == url + "room"
    got = [(m["type"], m["opcode"]) for m in entry["_webSocketMessages"]]
    assert got == [("receive", 1), ("send", 1), ("receive", 1), ("send", 1), ("receive", 8)]
    code, out, err = await cli("codegen", str(har), "--client")
    assert code == 0 and "connection" in out, err


async def test_the_file_is_written_as_the_run_goes_and_survives_a_kill(tmp_path: Path
                                                                       ) -> None:
    """A crash loses at most the last second: the file is rewritten while messages come, so
    a SIGKILL leaves a valid HAR with what came before."""
    import signal

    har = tmp_path / "live.har"
    script = write(tmp_path, """\
        let url = ""
        connection c { url = url }
        on project start { start c }
        on websocket start c { send c "one"; expect c as m within 20s; wait 1h }
    """, "live.evt")

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with ws_server(echo) as port:
        with anyio.fail_after(T):
            async with await anyio.open_process(
                    [sys.executable, "-m", "lang", "run", "--record", str(har), "--set",
                     f"url=ws://127.0.0.1:{port}/", str(script)], env=ENV_FOR_CLI) as proc:
                try:
                    while True:  # the file as a reader finds it at any moment: whole
                        if har.exists():
                            entries = json.loads(har.read_text())["log"]["entries"]
                            if entries and len(entries[0]["_webSocketMessages"]) == 2:
                                break
                        await anyio.sleep(0.05)
                finally:
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
    (entry,) = json.loads(har.read_text())["log"]["entries"]
    assert [(m["type"], m["data"]) for m in entry["_webSocketMessages"]] == [
        ("send", "one"), ("receive", "one")]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half write
