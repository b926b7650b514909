"""The client role: connect (TCP, TLS, the opening handshake) and hand over a WebSocket
(it knows nothing of evt)."""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from lang.wire.connection import Peer, WebSocket, address_text
from lang.wire.frames import (
    READ_SIZE,
    STREAM_ERRORS,
    BoundedDeflate,
    Limits,
    TransportError,
    seconds_text,
)

# ---------------------------------------------------------------- client role


@dataclass
class ClientOptions:
    url: str
    port: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    subprotocols: list[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    compression: bool = False
    verify_tls: bool = True
    ca_file: str | None = None
    limits: Limits = field(default_factory=Limits)


def client_tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TransportError(f"cannot load ca_file '{ca_file}': {e}") from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def connect(opts: ClientOptions, **hooks: Any) -> WebSocket:
    """TCP, TLS and the opening handshake, all within connect_timeout. Raises
    TransportError with the cause in words."""
    parts = urlsplit(opts.url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = opts.port or parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ctx = client_tls_context(opts.verify_tls, opts.ca_file) if secure else None
    timeout = opts.connect_timeout if opts.connect_timeout > 0 else math.inf
    try:
        with anyio.fail_after(timeout):
            try:
                stream = await anyio.connect_tcp(host, port, ssl_context=ctx, tls=secure,
                                                 tls_hostname=host if secure else None,
                                                 tls_standard_compatible=False)
            except ssl.SSLCertVerificationError as e:
                raise TransportError(f"TLS certificate not trusted: {e.verify_message}") from None
            except ssl.SSLError as e:
                raise TransportError(f"TLS failed: {e.reason or e}") from None
            except OSError as e:
                raise TransportError(_os_error(e)) from None
            except anyio.EndOfStream:  # only the TLS handshake reads: the server hung up
                raise TransportError("TLS failed: the server closed the connection during "
                                     "the TLS handshake") from None
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise TransportError("TLS failed: the connection was reset during the TLS "
                                     "handshake") from None
            try:
                return await _client_handshake(stream, opts, host, port, secure, target, **hooks)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await quiet_close(stream)
                raise
    except TimeoutError:
        raise TransportError(f"connect timed out after {seconds_text(opts.connect_timeout)}"
                             ) from None


async def _client_handshake(stream: anyio.abc.ByteStream, opts: ClientOptions, host: str,
                            port: int, secure: bool, target: str, **hooks: Any) -> WebSocket:
    ws = WSConnection(ConnectionType.CLIENT)
    default_port = 443 if secure else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    extensions = [BoundedDeflate(opts.limits.max_message)] if opts.compression else []
    extra = [(k, str(v).strip(" \t")) for k, v in opts.headers.items()]
    request = Request(host=host_header, target=target, subprotocols=list(opts.subprotocols),
                      extensions=extensions, extra_headers=extra)
    try:
        data = ws.send(request)
    except (h11.LocalProtocolError, LocalProtocolError, UnicodeError) as e:
        # h11 refused a header or the target (a computed url with a space, say)
        raise TransportError(f"cannot make the handshake request: {e}") from None
    try:
        await stream.send(data)
    except STREAM_ERRORS as e:
        raise TransportError(f"connection lost during the handshake ({e})") from None
    status: int | None = None
    body = b""
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except STREAM_ERRORS:
            if status is not None:
                break
            hint = "" if secure else "; is it a wss:// server?"
            raise TransportError("the server closed the connection during the handshake"
                                 + hint) from None
        if not secure and status is None and data[:1] == b"\x15" and data[1:2] == b"\x03":
            # a TLS alert record: a TLS server read our plain HTTP request
            raise TransportError("the server speaks TLS: use a wss:// url")
        try:
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, AcceptConnection):
                    conn = ws.connection
                    assert conn is not None
                    # the address connected to (localhost is 127.0.0.1 or ::1)
                    peer = Peer(remote=address_text(stream, f"{host}:{port}"),
                                path=target.split("?")[0],
                                subprotocol=ev.subprotocol,
                                headers=list(ev.extra_headers))
                    return WebSocket(stream, conn, client=True, limits=opts.limits, peer=peer,
                                     **hooks)
                if isinstance(ev, RejectConnection):
                    status = ev.status_code
                    if not ev.has_body:
                        raise TransportError(_rejected(status, b""))
                elif isinstance(ev, RejectData):
                    body += ev.data
                    if ev.body_finished or len(body) > 4096:
                        raise TransportError(_rejected(status or 0, body))
        except RemoteProtocolError as e:
            raise TransportError(f"bad handshake response: {e}") from None
        if status is not None and len(body) > 4096:
            break
    raise TransportError(_rejected(status or 0, body))


def _rejected(status: int, body: bytes) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    text = f"handshake refused: HTTP {status}" + (f" {phrase}" if phrase else "")
    snippet = body.decode("utf-8", "replace").strip().splitlines()
    if snippet and snippet[0] and len(snippet[0]) < 100:
        text += f": {snippet[0]}"
    return text


def _os_error(e: OSError) -> str:
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    import socket

    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(cause, TimeoutError):
        return "connect timed out"
    return cause.strerror or str(cause) or type(cause).__name__


async def quiet_close(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.aclose()
        except STREAM_ERRORS:
            pass
