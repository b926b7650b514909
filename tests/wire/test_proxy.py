"""Proxies for client connections (SPEC §15): evt scripts through a small HTTP CONNECT proxy
and a small SOCKS5 proxy written here (real sockets on 127.0.0.1, both recording what they
were asked), to `websockets` servers; the environment's precedence against the `websockets`
library's own `get_proxy`; errors that name the proxy and never its credentials.

The proxies relay bytes both ways once the tunnel is up; each records its requests before
answering, so a test reads them once the script is over. No test sleeps: waits are events
under a hard limit (run_evt's, or fail_after).
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream
from helpers import free_port, run_cli, run_evt
from websockets.asyncio.server import ServerConnection, serve
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from lang import config
from lang.repl import connection_line
from lang.wire.frames import TransportError
from lang.wire.proxy import (
    choose_proxy,
    environment_proxies,
    from_environment,
    parse_proxy,
    shown_proxy,
)

pytestmark = pytest.mark.anyio

T = 30  # seconds: the hard limit on a wait
USER, PASSWORD = "ana", "s3cr&t:pw"  # the password needs percent-encoding in a url
QUOTED = "s3cr%26t%3Apw"
ONLY_THE_PROXY_KNOWS = "echo.proxy-only.invalid"  # no resolver here knows it


# ---------------------------------------------------------------- the proxies


@dataclass
class ProxyLog:
    requests: list[str] = field(default_factory=list)  # CONNECT targets / SOCKS addresses
    auth: list[str | None] = field(default_factory=list)  # Proxy-Authorization / user:pass
    tunnels: int = 0


async def _relay(a: anyio.abc.SocketStream, a_in: BufferedByteReceiveStream,
                 b: anyio.abc.SocketStream) -> None:
    """Bytes both ways until either side ends; then both are closed."""
    async def pump(source: Any, sink: anyio.abc.SocketStream,
                   scope: anyio.CancelScope) -> None:
        try:
            while True:
                await sink.send(await source.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError):
            pass
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, a_in, b, tg.cancel_scope)
        tg.start_soon(pump, b, a, tg.cancel_scope)
    await anyio.aclose_forcefully(b)


def _names(host: str) -> str:
    return "127.0.0.1" if host in (ONLY_THE_PROXY_KNOWS, "localhost") else host


@asynccontextmanager
async def http_proxy(credentials: tuple[str, str] | None = (USER, PASSWORD),
                     status: str | None = None, silent: bool = False
                     ) -> AsyncIterator[tuple[int, ProxyLog]]:
    """An HTTP CONNECT proxy on 127.0.0.1: Basic credentials required when given; `status`
    ("403 Forbidden") refuses every tunnel; `silent` never answers."""
    log = ProxyLog()
    expected = None
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        expected = f"Basic {token}"

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            buffered = BufferedByteReceiveStream(client)
            try:
                head = (await buffered.receive_until(b"\r\n\r\n", 65536)).decode("latin-1")
            except (anyio.EndOfStream, anyio.IncompleteRead):
                return
            request, *lines = head.split("\r\n")
            method, target, _ = request.split(" ")
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines)}
            log.requests.append(f"{method} {target} Host={headers.get('host')}")
            log.auth.append(headers.get("proxy-authorization"))
            if silent:
                await anyio.sleep_forever()
            if expected is not None and headers.get("proxy-authorization") != expected:
                await client.send(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                                  b'Proxy-Authenticate: Basic realm="test"\r\n'
                                  b"Content-Length: 4\r\n\r\nno!\n")
                return
            if status is not None:
                await client.send(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = await anyio.connect_tcp(_names(host.strip("[]")), int(port))
            except OSError:
                await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            log.tunnels += 1
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _relay(client, buffered, upstream)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            yield port, log
            tg.cancel_scope.cancel()


@asynccontextmanager
async def socks5_proxy(credentials: tuple[str, str] | None = (USER, PASSWORD)
                       ) -> AsyncIterator[tuple[int, ProxyLog]]:
    """A SOCKS5 proxy on 127.0.0.1 (RFC 1928, CONNECT only; RFC 1929 user/password when
    `credentials`). It records "name HOST" or "address HOST" for each request, and knows
    ONLY_THE_PROXY_KNOWS."""
    log = ProxyLog()

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            buffered = BufferedByteReceiveStream(client)
            try:
                await _socks_session(client, buffered, log, credentials)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            yield port, log
            tg.cancel_scope.cancel()


async def _socks_session(client: anyio.abc.SocketStream, buffered: BufferedByteReceiveStream,
                         log: ProxyLog, credentials: tuple[str, str] | None) -> None:
    version, n = await buffered.receive_exactly(2)
    assert version == 5
    methods = await buffered.receive_exactly(n)
    wanted = 2 if credentials is not None else 0
    if wanted not in methods:
        await client.send(b"\x05\xff")
        return
    await client.send(bytes([5, wanted]))
    if credentials is not None:
        _, ulen = await buffered.receive_exactly(2)
        user = (await buffered.receive_exactly(ulen)).decode()
        (plen,) = await buffered.receive_exactly(1)
        password = (await buffered.receive_exactly(plen)).decode()
        log.auth.append(f"{user}:{password}")
        if (user, password) != credentials:
            await client.send(b"\x01\x01")
            return
        await client.send(b"\x01\x00")
    _, command, _, atyp = await buffered.receive_exactly(4)
    assert command == 1
    if atyp == 1:
        host = socket.inet_ntoa(await buffered.receive_exactly(4))
        log.requests.append(f"address {host}")
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, await buffered.receive_exactly(16))
        log.requests.append(f"address {host}")
    else:
        (length,) = await buffered.receive_exactly(1)
        host = (await buffered.receive_exactly(length)).decode()
        log.requests.append(f"name {host}")
    (port,) = struct.unpack("!H", await buffered.receive_exactly(2))
    try:
        upstream = await anyio.connect_tcp(_names(host), port)
    except OSError:
        await client.send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # connection refused
        return
    log.tunnels += 1
    await client.send(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
    await _relay(client, buffered, upstream)


# ---------------------------------------------------------------- servers and scripts


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


@asynccontextmanager
async def ws_server(ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    async with serve(echo, "127.0.0.1", 0, ssl=ctx) as server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


ECHO = """
    connection c {
        url = "URL"
        SETTINGS
    }
    on project start { start c }
    on websocket start c { send c "through ✓" }
    on websocket receive c as m { print "got", m; stop c }
    on websocket error c as E { print "error", E }
"""


def echo_script(url: str, settings: str) -> str:
    return ECHO.replace("URL", url).replace("SETTINGS", settings)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and QUOTED not in text, text


# ---------------------------------------------------------------- HTTP CONNECT


async def test_ws_through_an_http_proxy_with_credentials(tmp_path: Path) -> None:
    async with ws_server() as port, http_proxy() as (pport, log):
        r = await run_evt(echo_script(f"ws://127.0.0.1:{port}/",
                                      f'proxy = "http://{USER}:{QUOTED}@127.0.0.1:{pport}"'),
                          tmp_path=tmp_path, verbose=True)
    assert r.code == 0, r.err
    assert r.lines == ["got through ✓"]
    assert log.requests == [f"CONNECT 127.0.0.1:{port} Host=127.0.0.1:{port}"]
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # percent-decoded
    assert log.auth == [f"Basic {token}"]
    assert f"c: through proxy http://127.0.0.1:{pport}\n" in r.err
    assert_no_secret(r.out, r.err)


async def test_wss_through_an_http_proxy_has_tls_inside_the_tunnel(ca: trustme.CA,
                                                                 tmp_path: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with ws_server(ctx) as port, http_proxy() as (pport, log):
        r = await run_evt(echo_script(
            f"wss://localhost:{port}/",
            f'proxy = "http://{USER}:{QUOTED}@127.0.0.1:{pport}"\n ca_file = "{ca_file}"'),
            tmp_path=tmp_path)
        untrusted = await run_evt(echo_script(
            f"wss://localhost:{port}/", f'proxy = "http://{USER}:{QUOTED}@127.0.0.1:{pport}"'),
            tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got through ✓"]
    # the proxy is asked for the name: the certificate is checked against it, inside
    assert log.requests == [f"CONNECT localhost:{port} Host=localhost:{port}"] * 2
    assert len(untrusted.lines) == 1
    assert untrusted.lines[0].startswith("error c: TLS certificate not trusted: ")


async def test_407_names_the_proxy_and_shows_no_password(tmp_path: Path) -> None:
    async with ws_server() as port, http_proxy() as (pport, log):
        url = f"ws://127.0.0.1:{port}/"
        without = await run_evt(echo_script(url, f'proxy = "http://127.0.0.1:{pport}"'),
                                tmp_path=tmp_path)
        wrong = await run_evt(echo_script(
            url, f'proxy = "http://{USER}:not-{QUOTED}@127.0.0.1:{pport}"'),
            tmp_path=tmp_path, verbose=True)
    assert (without.code, without.err) == (0, "")
    assert without.lines == [
        f"error c: proxy http://127.0.0.1:{pport} refused the tunnel: 407 Proxy "
        f"Authentication Required (the proxy url has no user:pass@) ({url})"]
    assert wrong.code == 0
    assert wrong.lines == [
        f"error c: proxy http://127.0.0.1:{pport} refused the tunnel: 407 Proxy "
        f"Authentication Required (it did not take the credentials) ({url})"]
    assert_no_secret(without.out, without.err, wrong.out, wrong.err)
    assert log.tunnels == 0 and log.auth[0] is None


async def test_403_and_an_unreachable_proxy_are_error_events(tmp_path: Path) -> None:
    nothing = free_port()
    async with ws_server() as port, http_proxy(None, status="403 Forbidden") as (pport, _):
        url = f"ws://127.0.0.1:{port}/"
        forbidden = await run_evt(echo_script(url, f'proxy = "http://127.0.0.1:{pport}"'),
                                  tmp_path=tmp_path)
        away = await run_evt(echo_script(
            url, f'proxy = "http://{USER}:{QUOTED}@127.0.0.1:{nothing}"'), tmp_path=tmp_path)
        socks_away = await run_evt(echo_script(
            url, f'proxy = "socks5://{USER}:{QUOTED}@127.0.0.1:{nothing}"'),
            tmp_path=tmp_path)
    assert forbidden.lines == [f"error c: proxy http://127.0.0.1:{pport} refused the tunnel: "
                               f"403 Forbidden ({url})"]
    assert away.lines == [f"error c: cannot reach proxy http://127.0.0.1:{nothing}: "
                          f"connection refused ({url})"]
    assert socks_away.lines == [f"error c: cannot reach proxy socks5://127.0.0.1:{nothing}: "
                                f"connection refused ({url})"]
    assert_no_secret(away.out, away.err, socks_away.out, socks_away.err)


async def test_connect_timeout_covers_the_proxy(tmp_path: Path) -> None:
    """A proxy that takes the connection and never answers: the attempt ends at
    connect_timeout, naming the proxy."""
    async with http_proxy(silent=True) as (pport, log):
        r = await run_evt(echo_script("ws://127.0.0.1:1/",
                                      f'proxy = "http://127.0.0.1:{pport}"\n'
                                      "connect_timeout = 0.3"), tmp_path=tmp_path)
    assert r.lines == [f"error c: connect timed out after 0.3s (through proxy "
                       f"http://127.0.0.1:{pport}) (ws://127.0.0.1:1/)"]
    assert log.requests == ["CONNECT 127.0.0.1:1 Host=127.0.0.1:1"]


# ---------------------------------------------------------------- SOCKS5


async def test_socks5_resolves_here_and_socks5h_lets_the_proxy_resolve(tmp_path: Path
                                                                       ) -> None:
    async with ws_server() as port, socks5_proxy() as (pport, log):
        creds = f"{USER}:{QUOTED}@127.0.0.1:{pport}"
        here = await run_evt(echo_script(f"ws://localhost:{port}/",
                                         f'proxy = "socks5://{creds}"'), tmp_path=tmp_path)
        there = await run_evt(echo_script(f"ws://localhost:{port}/",
                                          f'proxy = "socks5h://{creds}"'), tmp_path=tmp_path)
        only = await run_evt(echo_script(f"ws://{ONLY_THE_PROXY_KNOWS}:{port}/",
                                         f'proxy = "socks5h://{creds}"'), tmp_path=tmp_path)
        unknown = await run_evt(echo_script(f"ws://{ONLY_THE_PROXY_KNOWS}:{port}/",
                                            f'proxy = "socks5://{creds}"'), tmp_path=tmp_path)
    for r in (here, there, only):
        assert (r.code, r.err, r.lines) == (0, "", ["got through ✓"])
    assert log.requests == ["address 127.0.0.1", "name localhost",
                            f"name {ONLY_THE_PROXY_KNOWS}"]
    # (python-socks authenticates before it resolves the name: the fourth got that far)
    assert log.auth == [f"{USER}:{PASSWORD}"] * 4
    assert unknown.lines == [
        f"error c: cannot resolve the host name '{ONLY_THE_PROXY_KNOWS}' (socks5:// resolves "
        f"names here; socks5h:// lets the proxy resolve them) "
        f"(ws://{ONLY_THE_PROXY_KNOWS}:{port}/)"]


async def test_socks5_refusals_in_words(tmp_path: Path) -> None:
    nothing = free_port()
    async with ws_server() as port, socks5_proxy() as (pport, log):
        url = f"ws://127.0.0.1:{port}/"
        wrong = await run_evt(echo_script(
            url, f'proxy = "socks5://{USER}:x{QUOTED}@127.0.0.1:{pport}"'), tmp_path=tmp_path)
        without = await run_evt(echo_script(url, f'proxy = "socks5://127.0.0.1:{pport}"'),
                                tmp_path=tmp_path)
        closed = await run_evt(echo_script(
            f"ws://127.0.0.1:{nothing}/", f'proxy = "socks5://{USER}:{QUOTED}@127.0.0.1:{pport}"'),
            tmp_path=tmp_path)
    shown = f"socks5://127.0.0.1:{pport}"
    assert wrong.lines == [f"error c: proxy {shown} refused the tunnel: it did not take the "
                           f"user name and password ({url})"]
    assert without.lines == [f"error c: proxy {shown} refused the tunnel: it takes none of "
                             f"the offered ways to authenticate (a user:pass@ missing?) ({url})"]
    assert closed.lines == [f"error c: proxy {shown} refused the tunnel: connection refused "
                            f"by the server (SOCKS reply 5) (ws://127.0.0.1:{nothing}/)"]
    assert_no_secret(wrong.out, wrong.err)
    assert log.tunnels == 0


# ---------------------------------------------------------------- the environment

ENVIRONMENTS: list[tuple[dict[str, str], str, str | None]] = [
    # (environment, url, the proxy websockets and evt choose)
    ({}, "ws://example.com/", None),
    ({"http_proxy": "http://h:1"}, "ws://example.com/", "http://h:1"),
    ({"http_proxy": "http://h:1"}, "wss://example.com/", None),
    ({"https_proxy": "http://s:2"}, "ws://example.com/", "http://s:2"),
    ({"https_proxy": "http://s:2"}, "wss://example.com/", "http://s:2"),
    ({"https_proxy": "http://s:2", "http_proxy": "http://h:1"}, "ws://example.com/",
     "http://s:2"),
    ({"ws_proxy": "http://w:3", "https_proxy": "http://s:2", "http_proxy": "http://h:1"},
     "ws://example.com/", "http://w:3"),
    ({"ws_proxy": "http://w:3", "https_proxy": "http://s:2"}, "wss://example.com/",
     "http://s:2"),
    ({"wss_proxy": "http://ws:4", "ws_proxy": "http://w:3", "https_proxy": "http://s:2"},
     "wss://example.com/", "http://ws:4"),
    ({"wss_proxy": "http://ws:4"}, "ws://example.com/", None),
    ({"socks_proxy": "http://k:5", "https_proxy": "http://s:2"}, "wss://example.com/",
     "socks5h://k:5"),
    ({"socks_proxy": "socks5://k:5", "ws_proxy": "http://w:3"}, "ws://example.com/",
     "http://w:3"),
    # upper and lower case, as urllib reads them
    ({"HTTP_PROXY": "http://H:1"}, "ws://example.com/", "http://H:1"),
    ({"HTTP_PROXY": "http://H:1", "http_proxy": "http://h:1"}, "ws://example.com/",
     "http://h:1"),
    ({"HTTPS_PROXY": "http://S:2", "http_proxy": "http://h:1"}, "ws://example.com/",
     "http://S:2"),
    ({"HTTP_PROXY": "http://H:1", "http_proxy": ""}, "ws://example.com/", None),
    ({"HTTP_PROXY": "http://H:1", "REQUEST_METHOD": "GET"}, "ws://example.com/", None),
    ({"http_proxy": "http://h:1", "REQUEST_METHOD": "GET"}, "ws://example.com/",
     "http://h:1"),
    # no_proxy: *, a host, a domain (with or without its dot), with a port, any case
    ({"https_proxy": "http://s:2", "no_proxy": "*"}, "wss://example.com/", None),
    ({"https_proxy": "http://s:2", "NO_PROXY": "*"}, "wss://example.com/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "*,other.org"}, "wss://example.com/",
     "http://s:2"),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com"}, "wss://example.com/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com"}, "wss://a.b.example.com/",
     None),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com"}, "wss://badexample.com/",
     "http://s:2"),
    ({"https_proxy": "http://s:2", "no_proxy": ".example.com"}, "wss://example.com/", None),
    ({"https_proxy": "http://s:2", "no_proxy": ".example.com"}, "wss://a.example.com/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "other.org, EXAMPLE.com"},
     "wss://Example.COM/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com:8443"},
     "wss://example.com:8443/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com:8443"},
     "wss://a.example.com:8443/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com:8443"},
     "wss://example.com:9443/", "http://s:2"),
    ({"https_proxy": "http://s:2", "no_proxy": "example.com:443"}, "wss://example.com/",
     None),
    ({"https_proxy": "http://s:2", "no_proxy": "127.0.0.1,localhost"},
     "wss://127.0.0.1:8765/", None),
    ({"https_proxy": "http://s:2", "no_proxy": "127.0.0.1,localhost"},
     "wss://127.0.0.2:8765/", "http://s:2"),
    ({"https_proxy": "http://s:2", "no_proxy": "::1"}, "wss://[::1]:8765/", None),
    ({"https_proxy": "http://s:2", "no_proxy": ""}, "wss://example.com/", "http://s:2"),
]


@pytest.mark.parametrize(("environ", "url", "expected"), ENVIRONMENTS)
def test_the_environment_s_precedence_is_the_websockets_library_s(
        environ: dict[str, str], url: str, expected: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = parse_uri(url)
    ours = from_environment(uri.host, uri.port, uri.secure, environ)
    assert (ours[0] if ours else None) == expected
    monkeypatch.setattr(os, "environ", dict(environ))  # what urllib, under websockets, reads
    assert get_proxy(uri) == expected


def test_the_environment_variable_is_named() -> None:
    env = {"HTTPS_PROXY": "http://u:pw-secret@s:2", "http_proxy": "proxy.corp:3128"}
    assert environment_proxies(env) == {"https": ("http://u:pw-secret@s:2", "HTTPS_PROXY"),
                                        "http": ("proxy.corp:3128", "http_proxy")}
    proxy = choose_proxy(True, "example.com", 443, True, env)
    assert proxy is not None
    assert (str(proxy), proxy.source) == ("http://s:2", "the environment variable HTTPS_PROXY")
    assert (proxy.username, proxy.password) == ("u", "pw-secret")
    assert "pw-secret" not in repr(proxy) and "u:" not in repr(proxy)  # no credentials
    # no scheme in the environment: http://, as curl and requests take it
    plain = choose_proxy(True, "example.com", 80, False, {"http_proxy": "proxy.corp:3128"})
    assert str(plain) == "http://proxy.corp:3128"
    with pytest.raises(TransportError) as e:
        choose_proxy(True, "example.com", 80, False, {"http_proxy": "ftp://u:secret@x:1"})
    assert str(e.value) == ("bad proxy 'ftp://x:1': a proxy url starts with http://, "
                            "socks5:// or socks5h://, got ftp:// (from the environment "
                            "variable http_proxy)")
    assert choose_proxy(None, "example.com", 80, False, {"http_proxy": "http://h:1"}) is None


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("variable", "scheme"), [
    ("ws_proxy", "ws"), ("https_proxy", "ws"), ("HTTP_PROXY", "ws"), ("socks_proxy", "ws"),
    ("wss_proxy", "wss"), ("https_proxy", "wss"), ("socks_proxy", "wss")])
async def test_each_environment_variable_is_used(variable: str, scheme: str, ca: trustme.CA,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """From the environment of this process (read at each attempt); a socks_proxy given as
    http://... is socks5h. Then no_proxy keeps the same url from it."""
    ctx = None
    settings = ""
    if scheme == "wss":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(ctx)
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        settings = f'ca_file = "{ca_file}"'
    socks = variable == "socks_proxy"
    clear_proxy_environment(monkeypatch)
    async with ws_server(ctx) as port, (socks5_proxy() if socks else http_proxy()) as (pport,
                                                                                     log):
        url = f"{scheme}://127.0.0.1:{port}/"
        monkeypatch.setenv(variable, f"http://{USER}:{QUOTED}@127.0.0.1:{pport}")
        through = await run_evt(echo_script(url, settings), tmp_path=tmp_path, verbose=True)
        monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
        bypassed = await run_evt(echo_script(url, settings), tmp_path=tmp_path, verbose=True)
    for r in (through, bypassed):
        assert r.code == 0 and r.lines == ["got through ✓"], r.err
        assert_no_secret(r.out, r.err)
    shown = f"{'socks5h' if socks else 'http'}://127.0.0.1:{pport}"
    assert f"c: through proxy {shown} (from the environment variable {variable})\n" \
        in through.err
    assert "through proxy" not in bypassed.err
    assert log.requests == (["address 127.0.0.1"] if socks else
                            [f"CONNECT 127.0.0.1:{port} Host=127.0.0.1:{port}"])


async def test_http_proxy_in_the_environment_of_evt_run_and_proxy_null(tmp_path: Path
                                                                       ) -> None:
    script = tmp_path / "env.evt"
    async with ws_server() as port, http_proxy() as (pport, log):
        url = f"ws://127.0.0.1:{port}/"
        env = {"http_proxy": f"http://{USER}:{QUOTED}@127.0.0.1:{pport}", "no_proxy": "",
               "NO_PROXY": "", "ws_proxy": "", "https_proxy": "", "HTTPS_PROXY": "",
               "socks_proxy": "", "SOCKS_PROXY": ""}

        async def run(settings: str, extra: dict[str, str] | None = None) -> Any:
            script.write_text(echo_script(url, settings), encoding="utf-8")
            call = functools.partial(run_cli, ["run", "-v", str(script)],
                                     env={**env, **(extra or {})}, timeout=T)
            return await anyio.to_thread.run_sync(call)

        through = await run("")
        direct = await run("proxy = null")
        bypassed = await run("", {"no_proxy": "localhost,127.0.0.1"})
    for r in (through, direct, bypassed):
        assert (r.code, r.lines) == (0, ["got through ✓"]), r.err
        assert_no_secret(r.out, r.err)
    assert f"c: through proxy http://127.0.0.1:{pport} (from the environment variable " \
           f"http_proxy)" in through.err
    assert "through proxy" not in direct.err + bypassed.err
    assert log.requests == [f"CONNECT 127.0.0.1:{port} Host=127.0.0.1:{port}"]  # once


# ---------------------------------------------------------------- urls, checks, :conns


def test_proxy_urls() -> None:
    p = parse_proxy(f"http://{USER}:{QUOTED}@Proxy.Example:3128")
    assert (p.scheme, p.host, p.port, p.username, p.password) == \
        ("http", "proxy.example", 3128, USER, PASSWORD)
    assert str(parse_proxy("http://[::1]:3128/")) == "http://[::1]:3128"
    assert parse_proxy("http://h").port == 80
    assert parse_proxy("socks5h://h").port == 1080
    for text, words in [
        ("https://u:secret@h:1", "bad proxy 'https://h:1': https:// proxies (TLS to the "
                                 "proxy itself) are not supported"),
        ("socks4://h:1", "bad proxy 'socks4://h:1': SOCKS4 is not supported"),
        ("http://u:secret@h:99999", "bad proxy 'http://h:99999': the port must be a number"),
        ("http://u:secret@h:1/path", "bad proxy 'http://h:1/path': a proxy url is "
                                     "scheme://host:port"),
        ("http://u@h:1", "bad proxy 'http://h:1': it has a user name but no password"),
        ("http://:1", "bad proxy 'http://:1': it has no host"),
    ]:
        with pytest.raises(ValueError) as e:
            parse_proxy(text)
        assert str(e.value).startswith(words), str(e.value)
        assert "secret" not in str(e.value)


def test_the_proxy_key_is_judged_before_anything_runs() -> None:
    assert config.problem("connection", "proxy", None) is None
    assert config.problem("connection", "proxy", "socks5h://u:p@h:1080") is None
    assert config.defaults("connection")["proxy"] is True  # unset: the environment
    assert config.problem("connection", "proxy", True) == \
        "'proxy' must be a proxy url (a string) or null, got bool"
    assert config.problem("connection", "proxy", "ftp://u:secret@h:1") == \
        "bad proxy 'ftp://h:1': a proxy url starts with http://, socks5:// or socks5h://"
    assert config.problem("connection", "proxy", "http://u:secret@h:0") == \
        "bad proxy 'http://h:0': the port must be a number from 1 to 65535"
    assert "not supported yet" not in config.unknown_key_message("connection", "proxy")


async def test_a_bad_literal_proxy_is_a_check_error(tmp_path: Path) -> None:
    r = await run_evt(echo_script("ws://127.0.0.1:1/", 'proxy = "ftp://u:secret@h:1"'),
                      tmp_path=tmp_path)
    assert r.code == 3
    message = r.err.splitlines()[0]  # (the lines after it quote the script)
    assert message.endswith("error: bad proxy 'ftp://h:1': a proxy url starts with http://, "
                            "socks5:// or socks5h://"), message


class FakeConnection:
    label = "c#2"
    state = "open"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.config = {**config.defaults("connection"), **cfg}

    def evt_address(self) -> str:
        return "127.0.0.1:3128"


def test_conns_shows_the_proxy_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "wss://example.com/"
    line = connection_line(FakeConnection({"url": url, "proxy": f"http://a:{QUOTED}@p:3128"}))
    assert line == "c#2: connection, open wss://example.com/ (remote 127.0.0.1:3128) via " \
                   "proxy http://p:3128"
    assert connection_line(FakeConnection({"url": url, "proxy": None})) == \
        "c#2: connection, open wss://example.com/ (remote 127.0.0.1:3128)"
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("https_proxy", f"socks5://a:{QUOTED}@s:1080")
    assert connection_line(FakeConnection({"url": url})).endswith(" via proxy socks5://s:1080")
    monkeypatch.setenv("no_proxy", ".example.com")
    assert "via" not in connection_line(FakeConnection({"url": url}))
    assert shown_proxy("ftp://x", url, None) is None  # not valid: nothing to show
