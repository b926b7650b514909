"""The client role: connect (TCP, TLS, the opening handshake) and hand over a WebSocket
(it knows nothing of evt)."""

from __future__ import annotations

import math
import re
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from lang.wire.accept import HEAD_LIMIT, read_accept, request_key
from lang.wire.connection import Peer, WebSocket, address_text
from lang.wire.direct import connect_tcp, send_once
from lang.wire.frames import (
    READ_SIZE,
    STREAM_ERRORS,
    BoundedDeflate,
    Limits,
    TransportError,
    seconds_text,
)
from lang.wire.proxy import Proxy, choose_proxy, open_tunnel

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
    certfile: str | None = None  # the client certificate (PEM), with its key unless keyfile
    keyfile: str | None = None
    limits: Limits = field(default_factory=Limits)
    # a Proxy or "http://..."/"socks5://..."/"socks5h://...", None for none, True for the
    # environment's (lang/wire/proxy.py)
    proxy: Proxy | str | bool | None = None


    def __post_init__(self) -> None:
        """A client certificate needs TLS (raised here: the attempt fails with it)."""
        if self.keyfile and not self.certfile:
            raise TransportError("'keyfile' without 'certfile': the client certificate is "
                                 "certfile (its key in keyfile, or in certfile itself)")
        if self.certfile and urlsplit(self.url).scheme.lower() != "wss":
            raise TransportError("a client certificate ('certfile') needs a wss:// url "
                                 "(ws:// has no TLS)")


def client_tls_context(verify: bool, ca_file: str | None, certfile: str | None = None,
                       keyfile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TransportError(f"cannot load ca_file '{ca_file}': {e}") from None
    if certfile:
        load_certificate(ctx, certfile, keyfile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Encrypted(Exception):
    pass


def _no_passphrase() -> str:
    raise _Encrypted  # never OpenSSL's prompt on the terminal


def load_certificate(ctx: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    """ctx.load_cert_chain (either role), with errors that name the file and say what is
    wrong with it. A passphrase-protected key is refused, never asked for."""
    texts = {}
    for what, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path:
            try:
                with open(path, "rb") as f:
                    texts[what] = f.read()
            except OSError as e:
                raise TransportError(f"cannot read {what} '{path}': "
                                     f"{e.strerror or e}") from None
    try:
        ctx.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except _Encrypted:
        raise TransportError(f"the key in '{keyfile or certfile}' is encrypted (protected "
                             "by a passphrase): evt needs an unencrypted key") from None
    except ssl.SSLError as e:
        raise TransportError(_certificate_problem(e, texts, certfile, keyfile)) from None


def _certificate_problem(e: ssl.SSLError, texts: dict[str, bytes], certfile: str,
                         keyfile: str | None) -> str:
    key_text = texts.get("keyfile", texts["certfile"])
    key_path = keyfile or certfile
    if e.reason == "KEY_VALUES_MISMATCH":
        return f"the key in '{key_path}' does not match the certificate in '{certfile}'"
    if b"-----BEGIN CERTIFICATE-----" not in texts["certfile"]:
        return f"certfile '{certfile}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if b"PRIVATE KEY-----" not in key_text:
        if keyfile:
            return f"keyfile '{keyfile}' holds no PEM private key"
        return f"certfile '{certfile}' holds no private key: set keyfile"
    return f"cannot load certfile '{certfile}'" + (f" and keyfile '{keyfile}'" if keyfile
                                                   else "") + f": {e.reason or e}"


_ALERT = re.compile(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_(\w+)")
# alerts a server sends about the client's certificate (RFC 8446 §6.2)
_CERTIFICATE_ALERTS = {"CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE",
                       "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
                       "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED"}


def tls_failure(e: ssl.SSLError, certfile: str | None) -> str:
    """A TLS failure of the client in words: an alert from the server about the client
    certificate (or its absence) says so."""
    m = _ALERT.fullmatch(e.reason or "")
    if m is None:
        return f"TLS failed: {e.reason or e}"
    alert = m[1].lower().replace("_", " ").replace("unknown ca", "unknown CA")
    if m[1] in _CERTIFICATE_ALERTS and certfile:
        return f"the server refused the client certificate (TLS alert: {alert})"
    if m[1] in _CERTIFICATE_ALERTS:
        return (f"the server requires a client certificate (TLS alert: {alert}): set "
                "certfile (and keyfile)")
    hint = ""
    if m[1] == "HANDSHAKE_FAILURE" and not certfile:
        hint = "; does the server require a client certificate (certfile)?"
    return f"TLS failed: the server ended the TLS handshake (TLS alert: {alert}){hint}"


def proxy_for(opts: ClientOptions) -> Proxy | None:
    """The proxy a connection with these options goes through (the environment's when
    opts.proxy is True). Raises TransportError for a bad one."""
    parts = urlsplit(opts.url)
    secure = parts.scheme == "wss"
    port = opts.port or parts.port or (443 if secure else 80)
    return choose_proxy(opts.proxy, parts.hostname or "", port, secure)


async def connect(opts: ClientOptions, **hooks: Any) -> WebSocket:
    """TCP, TLS and the opening handshake, all within connect_timeout. Raises
    TransportError with the cause in words."""
    parts = urlsplit(opts.url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = opts.port or parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ctx = client_tls_context(opts.verify_tls, opts.ca_file, opts.certfile,
                             opts.keyfile) if secure else None
    timeout = opts.connect_timeout if opts.connect_timeout > 0 else math.inf
    # a Proxy or None already when the endpoint chose it (lang.endpoints.client._options)
    proxy = opts.proxy if opts.proxy is None or isinstance(opts.proxy, Proxy) else \
        proxy_for(opts)
    try:
        with anyio.fail_after(timeout):  # the proxy's part included
            try:
                stream = await _open_stream(host, port, secure, ctx, proxy)
            except ssl.SSLCertVerificationError as e:
                raise TransportError(f"TLS certificate not trusted: {e.verify_message}") from None
            except ssl.SSLError as e:
                raise TransportError(tls_failure(e, opts.certfile)) from None
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
        via = f" (through proxy {proxy})" if proxy is not None else ""
        raise TransportError(f"connect timed out after {seconds_text(opts.connect_timeout)}"
                             f"{via}") from None


async def _open_stream(host: str, port: int, secure: bool, ctx: ssl.SSLContext | None,
                       proxy: Proxy | None) -> anyio.abc.ByteStream:
    """TCP to host:port, directly or through a tunnel of the proxy; then TLS for wss."""
    tcp = await (connect_tcp(host, port) if proxy is None else open_tunnel(proxy, host, port))
    if not secure:
        return tcp
    try:
        return await TLSStream.wrap(tcp, hostname=host, ssl_context=ctx,
                                    standard_compatible=False)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise


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
    # a plain 101 is read without h11 (lang.wire.accept); anything else by wsproto
    key = None if opts.compression else request_key(data)
    head = b""
    try:
        await send_once(stream, data)
    except STREAM_ERRORS as e:
        raise TransportError(f"connection lost during the handshake ({e})") from None
    status: int | None = None
    body = b""
    while True:
        try:
            data = await stream.receive(READ_SIZE)
        except STREAM_ERRORS as e:
            if status is not None:
                break
            if isinstance(e, ssl.SSLError):  # TLS 1.3: a client certificate refused after
                raise TransportError(tls_failure(e, opts.certfile)) from None  # handshake
            hint = "; is it a wss:// server?"
            if secure:  # TLS 1.3 servers that hang up, no alert, on a refused certificate
                hint = ("; did it refuse the client certificate?" if opts.certfile else
                        "; does it require a client certificate (certfile)?")
            raise TransportError("the server closed the connection during the handshake"
                                 + hint) from None
        if not secure and status is None and data[:1] == b"\x15" and data[1:2] == b"\x03":
            # a TLS alert record: a TLS server read our plain HTTP request
            raise TransportError("the server speaks TLS: use a wss:// url")
        if key is not None:
            head += data
            if b"\r\n\r\n" not in head and len(head) <= HEAD_LIMIT:
                continue
            try:
                accepted = read_accept(head, key, list(opts.subprotocols))
            except RemoteProtocolError as e:
                raise TransportError(f"bad handshake response: {e}") from None
            if accepted is not None:
                return _open(stream, Connection(ConnectionType.CLIENT, [], accepted.rest),
                             opts, host, port, target, accepted.subprotocol,
                             accepted.headers, hooks)
            key, data, head = None, head, b""  # wsproto reads it all, as before
        try:
            ws.receive_data(data)
            for ev in ws.events():
                if isinstance(ev, AcceptConnection):
                    conn = ws.connection
                    assert conn is not None
                    return _open(stream, conn, opts, host, port, target, ev.subprotocol,
                                 list(ev.extra_headers), hooks)
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


def _open(stream: anyio.abc.ByteStream, conn: Connection, opts: ClientOptions, host: str,
          port: int, target: str, subprotocol: str | None, headers: list[Any],
          hooks: dict[str, Any]) -> WebSocket:
    # the address connected to (localhost is 127.0.0.1 or ::1)
    peer = Peer(remote=address_text(stream, f"{host}:{port}"), path=target.split("?")[0],
                subprotocol=subprotocol, headers=headers)
    return WebSocket(stream, conn, client=True, limits=opts.limits, peer=peer, **hooks)


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
