"""An evt script served in this process beside a test (`serving`), and `websockets`
clients and raw sockets to talk to it. The port comes from the `NAME: listening on
ws://HOST:PORT/` line the server writes to stderr, which `serving` watches as it is
written."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from helpers.run import Result

T = 30  # seconds: the hard limit on a single wait (no test times itself)

LISTENING = re.compile(r"^(\w+): listening on (wss?)://(\S+):(\d+)/$")


# ---------------------------------------------------------------- running a script


class WatchedStderr(io.StringIO):
    """The script's stderr: keeps everything, and notices `NAME: listening on` lines."""

    def __init__(self) -> None:
        super().__init__()
        self.listening: dict[str, tuple[str, str, int]] = {}  # name -> (scheme, host, port)
        self._events: dict[str, anyio.Event] = {}
        self._partial = ""

    def write(self, text: str) -> int:
        n = super().write(text)
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            m = LISTENING.match(line)
            if m:
                self.listening[m[1]] = (m[2], m[3], int(m[4]))
                self._event(m[1]).set()
        return n

    def _event(self, name: str) -> anyio.Event:
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    async def wait_listening(self, name: str, timeout: float = T) -> tuple[str, str, int]:
        with anyio.fail_after(timeout):
            await self._event(name).wait()
        return self.listening[name]


@dataclass
class Running:
    """A script running in this process (see `serving`)."""

    rt: Any
    out: io.StringIO
    err: WatchedStderr
    done: anyio.Event = field(default_factory=anyio.Event)
    code: int | None = None

    async def port(self, name: str = "srv") -> int:
        return (await self.err.wait_listening(name))[2]

    async def url(self, name: str = "srv", path: str = "/") -> str:
        scheme, host, port = await self.err.wait_listening(name)
        return f"{scheme}://{host}:{port}{path}"

    async def wait(self, timeout: float = T) -> Result:
        """Wait for the script to end; its Result."""
        with anyio.fail_after(timeout):
            await self.done.wait()
        return self.result

    @property
    def result(self) -> Result:
        assert self.code is not None, "the script has not ended"
        return Result(self.code, self.out.getvalue(), self.err.getvalue())

    async def wait_output(self, text: str, timeout: float = T) -> str:
        """Bounded polling of stdout (written by the same event loop) until it holds text."""
        with anyio.fail_after(timeout):
            while text not in self.out.getvalue():
                await anyio.sleep(0.005)
        return self.out.getvalue()


@asynccontextmanager
async def serving(source: str, tmp_path: Path, *, timeout: float = 2 * T,
                  name: str = "test.evt") -> AsyncIterator[Running]:
    """Run an evt script in this process beside the `async with` body. Leaving the block
    waits (within `timeout` for the whole) for the script to end; `run.result` then holds
    its exit code, stdout and stderr. A check error fails the test at once."""
    import stdlib
    from lang.check.checker import check
    from lang.interpreter.program import Runtime
    from lang.syntax.loader import load

    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    builtins = stdlib.load()
    decls, problems = load(str(path))
    problems += check(decls, builtins)
    assert not problems, "".join(d.format() for d in problems)
    out, err = io.StringIO(), WatchedStderr()
    rt = Runtime(builtins=builtins, out=out, err=err)
    inits = rt.install(decls, None)
    run = Running(rt, out, err)

    async def main() -> None:
        try:
            run.code = await rt.main(inits, handle_signals=False)
        finally:
            run.done.set()

    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(main)
            yield run
            await run.done.wait()


def client(url: str, **kwargs: Any) -> Any:
    """A `websockets` client with a bounded handshake and no keep-alive of its own."""
    kwargs.setdefault("open_timeout", T)
    kwargs.setdefault("close_timeout", T)
    kwargs.setdefault("ping_interval", None)
    return connect(url, **kwargs)


async def recv(ws: ClientConnection, timeout: float = T) -> str | bytes:
    with anyio.fail_after(timeout):
        return await ws.recv()


async def closed_code(ws: ClientConnection, timeout: float = T) -> tuple[int | None, str]:
    """Wait until the server closes this client (reading what is left); the close frame the
    client received as (code, reason)."""
    with anyio.fail_after(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


async def http_status(port: int, request: str, timeout: float = T) -> tuple[int, str]:
    """Send a raw HTTP request; the status code of the response and all of it as text (the
    server closes the connection after a refusal)."""
    data = b""
    with anyio.fail_after(timeout):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request.encode("latin-1"))
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    text = data.decode("latin-1")
    m = re.match(r"HTTP/1\.1 (\d{3}) ", text)
    assert m, f"not an HTTP response: {text!r}"
    return int(m[1]), text


def upgrade_request(path: str = "/", extra: str = "") -> str:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n")


class RawStream:
    """A raw client's stream after its opening handshake: the bytes that came in the same
    read as the 101 (the server's first frames, when it writes them at once) are received
    first."""

    def __init__(self, stream: anyio.abc.SocketStream, rest: bytes) -> None:
        self.stream = stream
        self.rest = rest

    async def receive(self) -> bytes:
        if self.rest:
            rest, self.rest = self.rest, b""
            return rest
        return await self.stream.receive()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> RawStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def raw_upgrade(port: int, path: str = "/") -> RawStream:
    """A raw TCP client that completes the opening handshake; returns its stream."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(upgrade_request(path).encode())
    data = b""
    with anyio.fail_after(T):
        while b"\r\n\r\n" not in data:
            data += await stream.receive()
    assert data.startswith(b"HTTP/1.1 101 "), data
    return RawStream(stream, data.split(b"\r\n\r\n", 1)[1])


# ---------------------------------------------------------------- the tests


