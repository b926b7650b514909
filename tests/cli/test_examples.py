"""Every example runs as its header comment says; the ones with a fixed output print exactly
what tests/golden/examples/NAME.out holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "examples"
FIXED_OUTPUT = ["hello", "timers", "scenes", "echo_pair", "load"]
TIMED = re.compile(r"\b\d+(?:\.\d+)? ms\b")  # what depends on the machine: shown as T


@pytest.mark.parametrize("name", FIXED_OUTPUT)
def test_example_output(name: str) -> None:
    r = run_cli(["run", str(EXAMPLES / f"{name}.evt")])
    assert r.code == 0, r.err
    assert TIMED.sub("T", r.out) == (GOLDEN / f"{name}.out").read_text()


def test_hello_takes_a_name_argument() -> None:
    r = run_cli(["run", str(EXAMPLES / "hello.evt"), "evt"])
    assert r.lines[0] == "hello, evt!"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.evt")), ids=lambda p: p.name)
def test_every_example_checks_clean_and_says_what_it_shows(path: Path) -> None:
    r = run_cli(["check", str(path)])
    assert r.code == 0, r.err
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# {path.name}: "), "an example starts with a header comment"


def test_the_server_examples_serve_the_client_examples(tmp_path: Path) -> None:
    """echo_client.evt against echo_server.evt, as their header comments describe."""
    import socket
    import subprocess
    import sys

    from helpers import ENV_FOR_CLI

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "lang", "run", "--set", f"listen=127.0.0.1:{port}",
         str(EXAMPLES / "echo_server.evt")], env=ENV_FOR_CLI, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "listening on" in server.stderr.readline()
        r = run_cli(["run", "--set", f"url=ws://127.0.0.1:{port}/",
                     str(EXAMPLES / "echo_client.evt")])
        assert r.code == 0, r.err
        assert r.lines == ['request 7 answered: {"id": 7, "op": "ping"}', "got hello",
                           'got {"id":7,"op":"ping"}', "closed with 1000"]
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 143


@pytest.mark.anyio
async def test_pipe_sends_each_input_line_and_leaves_after_the_replies() -> None:
    """`printf 'a\\nb\\n' | evt run pipe.evt` against a `websockets` echo server (SPEC §18):
    both lines are sent once the connection is open, both replies printed, exit 0."""
    import sys

    import anyio
    from helpers import ENV_FOR_CLI
    from websockets.asyncio.server import ServerConnection, serve

    seen: list[str | bytes] = []

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            seen.append(msg)
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [sys.executable, "-m", "lang", "run", "--set", f"url=ws://127.0.0.1:{port}/",
                 str(EXAMPLES / "pipe.evt")], input=b"a\nb\n", check=False, env=ENV_FOR_CLI)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert done.stdout.decode().splitlines() == ["a", "b"]
    assert seen == ["a", "b"]  # each line sent once, as text
    assert err == ""


@pytest.mark.anyio
async def test_bridge_logs_what_it_forwards(tmp_path: Path) -> None:
    """bridge.evt between a `websockets` client and a `websockets` echo upstream, as its header
    says: its log is tests/golden/examples/bridge.out (ports written as PORT)."""
    import re

    import anyio
    from helpers.process import evt_process
    from helpers.server import client
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        source = (EXAMPLES / "bridge.evt").read_text(encoding="utf-8")
        async with evt_process(tmp_path, source, "--set", "listen=127.0.0.1:0", "--set",
                               f"upstream=ws://127.0.0.1:{port}", name="bridge.evt") as child:
            url = await child.url("edge")
            async with client(f"{url}chat?room=1") as ws:
                for msg in ["hello", b"\x00\x01\x02", "bye"]:
                    await ws.send(msg)
                    with anyio.fail_after(60):
                        assert await ws.recv() == msg
            await child.out.wait_for(r"^peer 1 closed \(1000\)$")
            code, _ = await child.terminate()
    assert code == 143
    child.assert_clean_stderr()
    log = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", child.out.text)
    assert log == (GOLDEN / "bridge.out").read_text()


def test_the_example_test_suite_passes_as_the_readme_shows() -> None:
    """`evt test examples/tests` (the README tour): every line, in order with -j 1, the
    times shown as T."""
    r = run_cli(["test", "-j", "1", "examples/tests"], cwd=ROOT)
    assert r.code == 0, r.out + r.err
    out = re.sub(r"\((\d+ ms|\d+\.\d s)\)", "(T)", r.out)
    out = re.sub(r" in \d+\.\d s$", " in T", out.rstrip("\n"))
    assert out + "\n" == (GOLDEN / "tests.out").read_text()


def test_the_readme_test_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing WebSocket services", 1)[1]
    code = re.search(r"```\n(server api.*?)```", section, re.S)
    assert code is not None
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "readme_test.evt"
        path.write_text(code[1], encoding="utf-8")
        r = run_cli(["test", str(path)])
    assert r.code == 0, r.out + r.err
    assert "1 passed, 0 failed, 1 skipped" in r.out
