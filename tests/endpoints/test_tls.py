"""wss: evt clients against a websockets TLS server with a certificate from a trustme CA."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from helpers import run_evt
from websockets.asyncio.server import ServerConnection, serve
from websockets.extensions.permessage_deflate import PerMessageDeflate

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(names or ("127.0.0.1", "localhost"))).configure_cert(ctx)
    return ctx


def ca_pem(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@asynccontextmanager
async def wss_server(ctx: ssl.SSLContext, handler: Any = None,
                     **kw: Any) -> AsyncIterator[int]:
    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(handler or echo, "127.0.0.1", 0, ssl=ctx, **kw) as server:
        yield server.sockets[0].getsockname()[1]


def script(source: str, port: int, ca_file: str | None = None) -> str:
    source = source.replace("PORT", str(port))
    return source.replace("CA_FILE", ca_file or "")


ECHO = """
    connection c {
        url = "wss://127.0.0.1:PORT/"
        SETTINGS
    }
    on project start { start c }
    on websocket start c { send c "over tls ✓"; send c b"\\x00\\x01" }
    on websocket receive c as m {
        print "got", type(m), m
        if type(m) == "bytes" { stop c }
    }
    on websocket error c as E { print "error", E }
    on websocket stop c as C { print "stop", C.code, C.clean }
"""


async def test_wss_with_ca_file(ca: trustme.CA, tmp_path: Path) -> None:
    async with wss_server(server_context(ca)) as port:
        r = await run_evt(script(ECHO.replace("SETTINGS", 'ca_file = "CA_FILE"'), port,
                                 ca_pem(ca, tmp_path)), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got string over tls ✓", 'got bytes b"\\x00\\x01"', "stop 1000 true"]


async def test_wss_without_ca_file_is_a_certificate_error(ca: trustme.CA, tmp_path: Path
                                                          ) -> None:
    async with wss_server(server_context(ca)) as port:
        r = await run_evt(script(ECHO.replace("SETTINGS", ""), port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert len(r.lines) == 1, r.lines
    line = r.lines[0]
    assert line.startswith("error c: TLS certificate not trusted: ")
    assert "certificate" in line.split("c: ", 1)[1]
    assert line.endswith(f"(wss://127.0.0.1:{port}/)")


async def test_wss_unhandled_certificate_error_fails_the_run(ca: trustme.CA, tmp_path: Path
                                                             ) -> None:
    async with wss_server(server_context(ca)) as port:
        r = await run_evt(script("""
            connection c { url = "wss://127.0.0.1:PORT/" }
            on project start { start c }
        """, port), tmp_path=tmp_path)
    assert r.code == 1
    assert "c: TLS certificate not trusted" in r.err


async def test_wss_certificate_for_another_name(ca: trustme.CA, tmp_path: Path) -> None:
    async with wss_server(server_context(ca, "example.test")) as port:
        r = await run_evt(script(ECHO.replace("SETTINGS", 'ca_file = "CA_FILE"'), port,
                                 ca_pem(ca, tmp_path)), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert len(r.lines) == 1 and r.lines[0].startswith("error c: TLS certificate not trusted")
    assert "mismatch" in r.lines[0] or "127.0.0.1" in r.lines[0]


async def test_wss_verify_tls_false_accepts_any_certificate(ca: trustme.CA, tmp_path: Path
                                                            ) -> None:
    async with wss_server(server_context(ca, "example.test")) as port:
        r = await run_evt(script(ECHO.replace("SETTINGS", "verify_tls = false"), port),
                          tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got string over tls ✓", 'got bytes b"\\x00\\x01"', "stop 1000 true"]


async def test_missing_ca_file_is_an_error_event(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    r = await run_evt(script(ECHO.replace("SETTINGS", 'ca_file = "CA_FILE"'), 9,
                             str(missing)), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert len(r.lines) == 1
    assert r.lines[0].startswith(f"error c: cannot load ca_file '{missing}'")


async def test_compression_over_wss_with_a_large_message(ca: trustme.CA, tmp_path: Path
                                                         ) -> None:
    seen: dict[str, Any] = {}

    async def handler(ws: ServerConnection) -> None:
        seen["offer"] = ws.request.headers.get("Sec-WebSocket-Extensions")
        seen["extensions"] = [type(e) for e in ws.protocol.extensions]
        async for msg in ws:
            seen.setdefault("sizes", []).append(len(msg))
            await ws.send(msg)

    async with wss_server(server_context(ca), handler) as port:
        r = await run_evt(script("""
            connection c {
                url = "wss://127.0.0.1:PORT/"
                ca_file = "CA_FILE"
                compression = true
            }
            let big = repeat("evt compresses well. ", 5000)   # 105,000 bytes
            on project start { start c }
            on websocket start c { send c big; send c encode(big) }
            on websocket receive c as m {
                print type(m), len(m), m == big or m == encode(big)
                if type(m) == "bytes" { stop c }
            }
        """, port, ca_pem(ca, tmp_path)), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["string 105000 true", "bytes 105000 true"]
    assert "permessage-deflate" in seen["offer"]
    assert seen["extensions"] == [PerMessageDeflate]
    assert seen["sizes"] == [105000, 105000]


# ---------------------------------------------------------------- found in review


@asynccontextmanager
async def tls_breaker(how: str) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener that reads the start of the ClientHello, then ends the connection:
    "eof" half-closes (the TLS handshake reads end of stream), "reset" resets it. Yields the
    port and a list that counts the connections."""
    seen: list[int] = []

    async def handle(stream: anyio.abc.SocketStream) -> None:
        seen.append(1)
        async with stream:
            await stream.receive()
            if how == "reset":
                sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            await stream.send_eof()
            try:
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield port, seen
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("how, cause", [
    ("eof", "the server closed the connection during the TLS handshake"),
    ("reset", "the connection was reset during the TLS handshake"),
])
async def test_a_server_that_ends_the_tls_handshake_is_an_error_event(
        tmp_path: Path, how: str, cause: str) -> None:
    """anyio's TLS wrap raises EndOfStream / BrokenResourceError, which connect() did not
    catch: a traceback and exit 1 instead of the error event (and the reconnect)."""
    async with tls_breaker(how) as (port, seen):
        r = await run_evt(script("""
            connection c {
                url = "wss://127.0.0.1:PORT/"
                reconnect = true
                reconnect_min = 1s  # the error handler's stop comes well before, even on
                reconnect_max = 1s  # a busy machine (else a third attempt is made)
            }
            let errors = 0
            on project start { start c }
            on websocket error c as E {
                errors = errors + 1
                print "error", E
                if errors == 2 { stop c }
            }
        """, port), tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"error c: TLS failed: {cause} (wss://127.0.0.1:{port}/)"] * 2
    assert len(seen) == 2
