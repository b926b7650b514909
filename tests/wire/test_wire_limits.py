"""The wire and the server under a misbehaving peer: raw-socket clients against a real evt
server (issue 11's network faults).

Most tests run an evt echo server in this process (`serving`, from test_server.py) and talk
to it over 127.0.0.1 with raw sockets that write exactly the bytes the test names: the
opening handshake with bytes after it, heads over the bounds, requests wsproto lets through,
frames that announce more than max_message, messages in endless empty fragments, a close
frame with a reason that is not UTF-8, plain HTTP to a wss port. After each misbehaving
peer the server must still serve a `websockets` client. The message timeout is a limit of
lang.wire with no config key: it is tested on the transport's own server role over a
real socket. Running out of file descriptors needs a process of its own (`ulimit -n 64`):
`evt run` in a subprocess, on both loops.

Every wait has a hard limit (T); nothing sleeps to wait for something.
"""

from __future__ import annotations

import base64
import queue
import re
import resource
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from helpers import ENV_FOR_CLI, frame_head, mask, write
from helpers.server import T, client, closed_code, recv, serving, upgrade_request

from lang.wire.frames import Limits
from lang.wire.server import ServerOptions, accept

pytestmark = pytest.mark.anyio

ECHO = """
    server srv {
        listen = "127.0.0.1:0"
        ping_interval = 0s
        %s
    }
    on project start { start srv }
    on websocket error srv as e { print "error:", e }
    on websocket receive srv as m from p {
        if m == "quit" { after 0ms { stop srv } }
        send p m
    }
"""


def echo(extra: str = "") -> str:
    return ECHO % extra


# ---------------------------------------------------------------- a raw client


def frame(opcode: int, payload: bytes, *, fin: bool = True, length: int | None = None,
          key: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A masked client frame; `length` announces another payload length than the real one."""
    n = len(payload) if length is None else length
    return frame_head(opcode, n, fin=fin) + key + mask(payload, key)


class Raw:
    """One raw TCP connection: writes what it is told, parses what the server answers."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.eof = False

    @classmethod
    async def connect(cls, port: int) -> Raw:
        with anyio.fail_after(T):
            return cls(await anyio.connect_tcp("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            self.buffer += await self.stream.receive()
            return True
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            self.eof = True
            return False

    async def response(self) -> tuple[int, str]:
        """The HTTP answer: its status, and its head and body as text (a body as its
        Content-Length says)."""
        with anyio.fail_after(T):
            while b"\r\n\r\n" not in self.buffer:
                assert await self._fill(), f"no HTTP answer: {self.buffer!r}"
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            text = head.decode("latin-1")
            m = re.search(r"(?im)^content-length: *(\d+)", text)
            size = int(m[1]) if m else 0
            while len(self.buffer) < size:
                assert await self._fill(), "the answer's body was cut short"
            body, self.buffer = self.buffer[:size], self.buffer[size:]
        status = re.match(r"HTTP/1\.1 (\d{3}) ", text)
        assert status, text
        return int(status[1]), text + "\r\n\r\n" + body.decode("utf-8", "replace")

    async def frame(self) -> tuple[int, bytes] | None:
        """The next server frame (opcode, payload); None at the end of the stream."""
        with anyio.fail_after(T):
            while True:
                parsed = self._parse()
                if parsed is not None:
                    return parsed
                if not await self._fill():
                    return None

    def _parse(self) -> tuple[int, bytes] | None:
        b = self.buffer
        if len(b) < 2:
            return None
        assert not b[1] & 0x80, "a server frame is never masked"
        n, at = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < at + n:
            return None
        self.buffer = b[at + n:]
        return b[0] & 0x0F, b[at:at + n]

    async def close_frame(self) -> tuple[int, str]:
        """Read until the server's close frame (other frames are skipped): (code, reason)."""
        while True:
            got = await self.frame()
            assert got is not None, "the connection ended without a close frame"
            if got[0] == 0x8:
                return struct.unpack("!H", got[1][:2])[0], got[1][2:].decode("utf-8")

    async def upgrade(self, extra: bytes = b"") -> None:
        """The opening handshake, with `extra` bytes in the same write."""
        await self.send(upgrade_request().encode() + extra)
        status, text = await self.response()
        assert status == 101, text

    async def aclose(self) -> None:
        await self.stream.aclose()


async def still_serving(url: str, text: str = "still here") -> None:
    async with client(url) as ws:
        await ws.send(text)
        assert await recv(ws) == text


async def quit_server(url: str) -> None:
    async with client(url) as ws:
        await ws.send("quit")
        await closed_code(ws)


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- bytes with the upgrade


async def test_a_frame_in_the_same_write_as_the_upgrade_request_is_echoed(tmp_path: Path
                                                                         ) -> None:
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        raw = await Raw.connect(port)
        big = bytes(range(256)) * 400  # past the bound of the head, in the same read
        await raw.upgrade(frame(0x1, b"hello") + frame(0x2, b"\x00\xff") + frame(0x2, big))
        assert await raw.frame() == (0x1, b"hello")
        assert await raw.frame() == (0x2, b"\x00\xff")
        assert await raw.frame() == (0x2, big)
        await raw.send(frame(0x1, b"and after"))
        assert await raw.frame() == (0x1, b"and after")
        await raw.aclose()
        await quit_server(url)
    assert run.result.code == 0, run.result.err


async def test_a_partial_frame_with_the_upgrade_request_does_not_desync(tmp_path: Path
                                                                       ) -> None:
    whole = frame(0x1, b"x" * 300)
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        raw = await Raw.connect(port)
        await raw.upgrade(whole[:3])  # the frame's header cut in the middle
        await raw.send(whole[3:] + frame(0x1, b"next"))
        assert await raw.frame() == (0x1, b"x" * 300)
        assert await raw.frame() == (0x1, b"next")
        await raw.aclose()
        await quit_server(url)
    assert run.result.code == 0, run.result.err


async def test_a_pipelined_second_request_is_read_as_websocket_bytes(tmp_path: Path) -> None:
    """After 101 the connection speaks WebSocket: a second HTTP request in the same write is
    not a frame ("G" is opcode 7), so the connection fails with 1002 at once."""
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        raw = await Raw.connect(port)
        await raw.upgrade(upgrade_request().encode())
        code, reason = await raw.close_frame()
        assert code == 1002, reason
        await raw.aclose()
        await still_serving(url)
        await quit_server(url)
    assert run.result.code == 0
    assert "Traceback" not in run.result.err


# ---------------------------------------------------------------- bounds of the request head


def head_with(target: str = "/", headers: int = 0, value: str = "v") -> bytes:
    extra = "".join(f"X-Filler-{i}: {value}\r\n" for i in range(headers))
    return upgrade_request(target, extra).encode()


HEADS = [  # (name, request, status, what the answer says)
    ("a 64 KiB url", head_with("/" + "a" * 65536), 414, "request line over 8192 bytes"),
    ("a url just over 8192 bytes", head_with("/" + "a" * 8192), 414, "request line over"),
    ("10,000 headers", head_with(headers=10_000), 431, "more than 128 headers"),
    ("129 headers", head_with(headers=129 - 5), 431, "more than 128 headers"),
    ("a header line over 8192 bytes", head_with(headers=1, value="v" * 8200), 431,
     "header line over 8192 bytes"),
    ("a 20 KB head of 100 headers", head_with(headers=100, value="v" * 200), 431,
     "request head over 16384 bytes"),
]


@pytest.mark.parametrize("pieces", [1, 7], ids=["one write", "in pieces"])
async def test_the_request_head_is_bounded_whatever_the_reads(tmp_path: Path,
                                                               pieces: int) -> None:
    """As the `websockets` library answers (414, 431), and the same whether the head comes
    in one read or in many."""
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        for name, request, status, words in HEADS:
            raw = await Raw.connect(port)
            step = -(-len(request) // pieces)
            for i in range(0, len(request), step):
                try:
                    await raw.send(request[i:i + step])
                except (anyio.BrokenResourceError, OSError):
                    break  # refused before the rest was written: the answer is there
            got, text = await raw.response()
            assert (got, words in text) == (status, True), f"{name}: {text[:300]}"
            await raw.aclose()
        # at the bounds: 128 headers and an 8192-byte request line are served
        for request in [head_with(headers=128 - 5),
                        head_with("/" + "a" * (8192 - len("GET / HTTP/1.1")))]:
            raw = await Raw.connect(port)
            await raw.upgrade(b"")
            await raw.aclose()
            raw = await Raw.connect(port)
            await raw.send(request)
            got, text = await raw.response()
            assert got == 101, text
            await raw.aclose()
        await still_serving(url)
        await quit_server(url)
    assert run.result.code == 0


@pytest.mark.parametrize("name,request_,status,words", [
    ("HTTP/1.0", upgrade_request().replace("HTTP/1.1", "HTTP/1.0"), 505, "HTTP/1.1 is needed"),
    ("a 3-byte key", upgrade_request().replace("dGhlIHNhbXBsZSBub25jZQ==", "abcd"), 400,
     "not 16 bytes in base64"),
    ("a 12-byte key", upgrade_request().replace(
        "dGhlIHNhbXBsZSBub25jZQ==", base64.b64encode(b"k" * 12).decode()), 400,
     "not 16 bytes in base64"),
    ("a key that is not base64", upgrade_request().replace(
        "dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="), 400, "not 16 bytes in base64"),
    ("a body", upgrade_request(extra="Content-Length: 5\r\n") + "hello", 400, "has no body"),
    ("a chunked body", upgrade_request(extra="Transfer-Encoding: chunked\r\n") + "0\r\n\r\n",
     400, "has no body"),
    ("version 8", upgrade_request().replace("Version: 13", "Version: 8"), 426,
     "unsupported WebSocket version '8'"),
], ids=lambda x: x if isinstance(x, str) and len(x) < 30 else "")
async def test_requests_the_websockets_library_refuses_are_refused(
        tmp_path: Path, name: str, request_: str, status: int, words: str) -> None:
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        raw = await Raw.connect(port)
        await raw.send(request_.encode())
        got, text = await raw.response()
        assert (got, words in text) == (status, True), text
        assert "missing" not in text.lower(), text
        if status == 426:
            assert "sec-websocket-version: 13" in text.lower(), text
        await raw.aclose()
        await still_serving(url)
        await quit_server(url)
    assert run.result.code == 0


# ---------------------------------------------------------------- frames


async def test_a_frame_header_announcing_more_than_max_message_is_refused_at_once(
        tmp_path: Path) -> None:
    """Nothing of the payload is sent, and keep-alive is off: only the header can tell."""
    async with serving(echo("max_message = 1000"), tmp_path) as run:
        port, url = await run.port(), await run.url()
        for announced in [frame(0x2, b"", length=1001)[:8],  # the header and the mask key
                          frame(0x1, b"", length=2 ** 40)[:14],
                          # 900 bytes in a first fragment, then a frame announcing 101 more
                          frame(0x1, b"y" * 900, fin=False) + frame(0x0, b"", length=101)[:8]]:
            raw = await Raw.connect(port)
            await raw.upgrade()
            await raw.send(announced)
            assert await raw.close_frame() == (1009, "message over 1000 bytes")
            await raw.aclose()
        # up to max_message is fine, in one frame or in fragments
        raw = await Raw.connect(port)
        await raw.upgrade()
        await raw.send(frame(0x1, b"z" * 1000)
                       + frame(0x1, b"a" * 500, fin=False) + frame(0x0, b"b" * 500))
        assert await raw.frame() == (0x1, b"z" * 1000)
        assert await raw.frame() == (0x1, b"a" * 500 + b"b" * 500)
        await raw.aclose()
        await still_serving(url)
        await quit_server(url)
    res = run.result
    assert res.code == 0
    assert len(errors(res.out)) == 3, res.out
    assert all("message over 1000 bytes; closing with 1009" in e for e in errors(res.out))


async def test_a_compressed_frame_announcing_far_more_than_max_message_is_refused_at_once(
        tmp_path: Path) -> None:
    """With permessage-deflate the wire length is not the message's, but deflate inflates to
    at least about what it was given: a compressed frame (or the continuation of a
    compressed message) announcing far more than max_message is refused at its header."""
    deflate = zlib.compressobj(wbits=-15)
    small = deflate.compress(b"hello " * 100) + deflate.flush(zlib.Z_SYNC_FLUSH)
    small = small[:-4]  # RFC 7692 §7.2.1: the sync flush's last 4 bytes are left out
    async with serving(echo("max_message = 1000\n compression = true"), tmp_path) as run:
        port, url = await run.port(), await run.url()
        for announced in [b"\xc1" + frame(0x1, b"", length=100_000)[1:14],
                          b"\x41" + frame(0x1, small)[1:] + frame(0x0, b"", length=5000)[:8]]:
            raw = await Raw.connect(port)
            await raw.send(upgrade_request(
                extra="Sec-WebSocket-Extensions: permessage-deflate\r\n").encode())
            status, text = await raw.response()
            assert status == 101 and "permessage-deflate" in text, text
            await raw.send(announced)
            assert await raw.close_frame() == (1009, "message over 1000 bytes")
            await raw.aclose()
        await still_serving(url)
        await quit_server(url)
    assert run.result.code == 0


async def test_endless_empty_continuation_frames_are_refused(tmp_path: Path) -> None:
    """Zero-length fragments add nothing to max_message: they are counted. The default
    bound is max(65536, max_message // 64) fragments (frames with FIN clear) of one
    message."""
    empties = frame(0x0, b"", fin=False) * 70_000
    async with serving(echo("close_timeout = 60s"), tmp_path) as run:
        port, url = await run.port(), await run.url()
        async with client(url) as other:
            raw = await Raw.connect(port)
            await raw.upgrade()
            await raw.send(frame(0x1, b"start", fin=False))
            with anyio.move_on_after(T):
                try:
                    await raw.send(empties)
                except (anyio.BrokenResourceError, OSError):
                    pass  # refused before all were written
            assert await raw.close_frame() == (1009, "message in more than 65536 fragments")
            # a peer that goes on flooding is not parsed for long: it is dropped long before
            # close_timeout (a minute) would drop it
            with anyio.fail_after(T):
                try:
                    while True:
                        await raw.send(frame(0x0, b"", fin=False) * 10_000)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
            await raw.aclose()
            await other.send("others are served")
            assert await recv(other) == "others are served"
        # a message in many (non-empty and empty) fragments under the bound is whole
        raw = await Raw.connect(port)
        await raw.upgrade()
        await raw.send(frame(0x1, b"a", fin=False) + frame(0x0, b"", fin=False) * 1000
                       + frame(0x0, b"b", fin=False) + frame(0x0, b""))
        assert await raw.frame() == (0x1, b"ab")
        await raw.aclose()
        await quit_server(url)
    assert run.result.code == 0
    [error] = errors(run.result.out)
    assert "message in more than 65536 fragments; closing with 1009" in error


async def test_a_close_reason_that_is_not_utf8_gets_1007_in_evts_words(tmp_path: Path
                                                                      ) -> None:
    async with serving(echo(), tmp_path) as run:
        port, url = await run.port(), await run.url()
        raw = await Raw.connect(port)
        await raw.upgrade()
        await raw.send(frame(0x8, struct.pack("!H", 1000) + b"ok\xc3("))
        assert await raw.close_frame() == (1007, "close reason not valid UTF-8 at byte 2")
        await raw.aclose()
        raw = await Raw.connect(port)
        await raw.upgrade()
        await raw.send(frame(0x1, b"\xff"))
        assert await raw.close_frame() == (1007, "text message not valid UTF-8")
        await raw.aclose()
        await quit_server(url)
    out = run.result.out
    assert "codec" not in out and "position" not in out, out
    assert len(errors(out)) == 2, out


# ---------------------------------------------------------------- the message timeout


async def test_a_message_not_finished_within_the_message_timeout_fails_with_1008() -> None:
    """On the transport's server role (message_timeout has no config key): one peer starts a
    message and never finishes it; another is served meanwhile, and after."""
    failures: list[str] = []
    opts = ServerOptions(limits=Limits(ping_interval=0, message_timeout=0.5,
                                       close_timeout=T))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        ws = await accept(stream, opts, "raw", on_failure=failures.append)

        async def echo_back(message: str | bytes) -> None:
            await ws.send(message)
        await ws.run(echo_back)

    with anyio.fail_after(3 * T):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, \
                anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            slow, other = await Raw.connect(port), await Raw.connect(port)
            await other.upgrade()
            await slow.upgrade()
            await slow.send(frame(0x1, b"never", fin=False) + frame(0x0, b" fin", fin=False))
            await other.send(frame(0x1, b"meanwhile"))
            assert await other.frame() == (0x1, b"meanwhile")
            assert await slow.close_frame() == (1008, "message not finished within 0.5s")
            await slow.send(frame(0x8, struct.pack("!H", 1008)))
            assert await slow.frame() is None  # the server ends TCP after the handshake
            await other.send(frame(0x1, b"after"))
            assert await other.frame() == (0x1, b"after")
            tg.cancel_scope.cancel()
    assert failures == ["message not finished within 0.5s; closing with 1008 (policy "
                        "violation)"]


# ---------------------------------------------------------------- plain HTTP to wss


async def test_plain_http_to_a_wss_port_gets_400(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    source = echo(f'certfile = "{certfile}"\n keyfile = "{keyfile}"')
    async with serving(source, tmp_path) as run:
        port = await run.port()
        for request in [upgrade_request(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                        "POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n"]:
            raw = await Raw.connect(port)
            await raw.send(request.encode())
            status, text = await raw.response()
            assert status == 400 and "plain HTTP request to a TLS (wss://) port" in text, text
            await raw.aclose()
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        async with client(await run.url(), ssl=ctx) as ws:
            await ws.send("quit")
            await closed_code(ws)
    assert run.result.code == 0, run.result.err


# ---------------------------------------------------------------- handshakes and max_clients


async def test_clients_in_their_handshake_count_against_max_clients(tmp_path: Path) -> None:
    source = echo("max_clients = 2") + 'on websocket stop srv from p { print "stop", p.id }\n'
    async with serving(source, tmp_path) as run:
        port, url = await run.port(), await run.url()
        silent = [await Raw.connect(port), await Raw.connect(port)]  # TCP only, so far
        third = await Raw.connect(port)
        await third.send(upgrade_request().encode())
        status, text = await third.response()
        assert status == 503 and "server full (2 clients)" in text, text
        await third.aclose()
        for raw in silent:  # they were counted, and are served when they finish
            await raw.upgrade()
            await raw.send(frame(0x1, b"late"))
            assert await raw.frame() == (0x1, b"late")
        await silent[0].send(frame(0x8, struct.pack("!H", 1000)))
        assert await silent[0].close_frame() == (1000, "")
        assert await silent[0].frame() is None
        await silent[0].aclose()
        await run.wait_output("stop 1")  # gone from the server: room for one again
        await still_serving(url)
        await silent[1].send(frame(0x1, b"quit"))
        await silent[1].close_frame()
        await silent[1].aclose()
    assert run.result.code == 0



# ---------------------------------------------------------------- out of file descriptors


class Lines:
    """A pipe of the child's, read by a thread into a queue of lines."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))

    def poll(self) -> list[str]:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return self.lines

    def wait_for(self, pattern: str, timeout: float = T) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.poll():
                m = re.search(pattern, line)
                if m:
                    return m
            assert time.monotonic() < deadline, f"no line like {pattern!r} in {self.lines}"
            time.sleep(0.01)


class Client:
    """A blocking raw client that sent its upgrade request and a frame, and waits for the
    101 and the echo."""

    def __init__(self, port: int, text: bytes) -> None:
        self.text = text
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.sock.sendall(upgrade_request().encode() + frame(0x1, text))
        self.data = b""

    def served(self) -> bool:
        """Whether the 101 and the echo came (reads what is there, without waiting)."""
        while select.select([self.sock], [], [], 0)[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.data += chunk
        head, _, rest = self.data.partition(b"\r\n\r\n")
        assert not _ or head.startswith(b"HTTP/1.1 101 "), self.data
        return rest == b"\x81" + bytes([len(self.text)]) + self.text

    def echo(self, text: bytes) -> None:
        """One more round trip, waiting (within the socket's timeout) for it."""
        self.sock.sendall(frame(0x1, text))
        want = b"\x81" + bytes([len(text)]) + text
        got = b""
        while len(got) < len(want):
            chunk = self.sock.recv(len(want) - len(got))
            assert chunk, "the server ended the connection"
            got += chunk
        assert got == want

    def close(self) -> None:
        self.sock.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.01)


def limit_files(n: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return limit


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_file_descriptors_is_reported_and_serving_goes_on(tmp_path: Path,
                                                                 loop: str) -> None:
    """`ulimit -n 64` and 150 clients: evt reports the failing accept once (an error event
    of the server), keeps serving the clients it has, and accepts the others as places come
    free. Each client is served or waits in the listen backlog; nothing is dropped."""
    script = write(tmp_path, echo())
    env = dict(ENV_FOR_CLI, EVT_LOOP=loop)
    proc = subprocess.Popen([sys.executable, "-m", "lang", "run", str(script)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit_files(64))
    started = time.monotonic()
    clients: list[Client] = []
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        port = int(err.wait_for(r"srv: listening on ws://127\.0\.0\.1:(\d+)/")[1])
        # one at a time until an accept fails: each is served, or the error event comes
        while not errors("\n".join(out.poll())):
            assert len(clients) < 150, "150 clients served with 64 file descriptors?"
            clients.append(Client(port, b"c%d" % len(clients)))
            wait_until(lambda: clients[-1].served() or bool(errors("\n".join(out.poll()))),
                       f"client {len(clients) - 1} served, or an error event")
        served = [c for c in clients if c.served()]
        waiting = [c for c in clients if c not in served]
        # (Linux's accept() fails with EMFILE as soon as no descriptor is free, even with no
        # connection waiting: the last client may have been served)
        assert len(served) > 20 and len(waiting) <= 1, (len(served), len(waiting))
        [error] = errors("\n".join(out.lines))
        assert "cannot accept connections: Too many open files (EMFILE)" in error, error
        for c in served:  # the clients it has are still served
            c.echo(b"still")
        while len(clients) < 150:  # the rest of the 150 wait in the backlog
            clients.append(Client(port, b"c%d" % len(clients)))
            waiting.append(clients[-1])
        while waiting:  # as places come free, the others are accepted, in order
            batch, waiting = waiting[:20], waiting[20:]
            for c in served[:len(batch)]:
                c.close()
            served = served[len(batch):]
            for c in batch:
                wait_until(c.served, f"client {clients.index(c)} served")
                served.append(c)
        for c in served:
            c.echo(b"end")
        served[0].echo(b"quit")
        assert proc.wait(timeout=T) == 0, err.poll()
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    stderr = "\n".join(err.poll())
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    reports = errors("\n".join(out.poll()))
    assert 1 <= len(reports) <= 1 + elapsed // 60, reports  # at most one a minute
