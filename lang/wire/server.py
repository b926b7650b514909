"""The server role: accept, bound and answer the opening handshake, hand over a WebSocket
(it knows nothing of evt)."""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    Request,
)
from wsproto.utilities import RemoteProtocolError

from lang.wire.client import load_certificate, quiet_close
from lang.wire.connection import Peer, WebSocket
from lang.wire.direct import send_once
from lang.wire.frames import (
    READ_SIZE,
    STREAM_ERRORS,
    BoundedDeflate,
    Limits,
    TransportError,
    seconds_text,
)
from lang.wire.http_request import BadRequest, RequestHead
from lang.wire.http_request import check as check_request

# ---------------------------------------------------------------- server role


@dataclass
class ServerOptions:
    path: str | None = None
    origins: list[str | None] | None = None
    subprotocols: list[str] = field(default_factory=list)
    handshake_timeout: float = 10.0
    compression: bool = False
    limits: Limits = field(default_factory=Limits)


@dataclass
class Upgrade:
    """An upgrade request as a `decide` hook sees it (SPEC §15's `on websocket request`)."""

    path: str
    query: str
    headers: list[tuple[bytes | str, bytes | str]]
    remote: str
    subprotocols: list[str]


@dataclass
class Decision:
    """What a `decide` hook answers: a refusal (status, body), or the subprotocol to choose
    (None: the server's own choice) and headers to add to the 101."""

    reject: tuple[int, str] | None = None
    subprotocol: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def accept(stream: anyio.abc.ByteStream, opts: ServerOptions, remote: str,
                 admit: Callable[[], str | None] | None = None,
                 decide: Callable[[Upgrade], Awaitable[Decision]] | None = None,
                 **hooks: Any) -> WebSocket:
    """The server side of the opening handshake, within handshake_timeout. Refusals are
    answered with an HTTP response and raise Rejected; a client that stalls or speaks
    something else raises TransportError. `admit` may refuse with 503 (its reason). The
    request head is bounded (lang.wire.http_request) whatever the reads; what came after it in
    the same reads is the client's first WebSocket bytes, kept for the connection. `decide`
    (awaited within handshake_timeout, after the server's own checks) may refuse the request
    or choose its subprotocol and add headers to the 101."""
    ws = WSConnection(ConnectionType.SERVER)
    head = RequestHead()
    timeout = opts.handshake_timeout if opts.handshake_timeout > 0 else math.inf
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    data = await stream.receive(READ_SIZE)
                except STREAM_ERRORS:
                    raise TransportError("the client left during the handshake") from None
                got = _read_request(ws, head, data)
                del data  # a refusal lingers a moment: it holds no read buffer
                if got is None:
                    continue
                if isinstance(got, Request):
                    return await _answer(stream, ws, got, opts, remote, admit, head.rest,
                                         decide, **hooks)
                status, why, headers = got
                await refuse(stream, status, why, headers)
                raise Rejected(status, why)
    except TimeoutError:
        raise TransportError(f"handshake not finished within "
                             f"{seconds_text(opts.handshake_timeout)}") from None


def _read_request(ws: WSConnection, head: RequestHead, data: bytes
                  ) -> Request | tuple[int, str, tuple[tuple[str, str], ...]] | None:
    """One read of the request: None while its head is incomplete, then the Request, or
    the refusal (status, why, headers). (No exception leaves here: its traceback would keep
    the read's buffers alive while the refusal lingers.)"""
    try:
        if not head.feed(data):
            return None
        check_request(head.head)
    except BadRequest as e:
        head.forget()
        return e.status, f"bad request: {e.reason}" if e.status == 400 else e.reason, e.headers
    try:
        ws.receive_data(head.head)
        events = list(ws.events())
    except RemoteProtocolError as e:
        status, headers = 400, ()
        if isinstance(e.event_hint, RejectConnection):
            status = e.event_hint.status_code
            headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                            for k, v in e.event_hint.headers if k.lower() != b"content-length")
        return status, f"bad request: {e}", headers
    for ev in events:
        if isinstance(ev, Request):
            return ev
    return 400, "bad request: not a complete HTTP request", ()


async def _answer(stream: anyio.abc.ByteStream, ws: WSConnection, req: Request,
                  opts: ServerOptions, remote: str, admit: Callable[[], str | None] | None,
                  rest: bytes, decide: Callable[[Upgrade], Awaitable[Decision]] | None,
                  **hooks: Any) -> WebSocket:
    path, _, query = req.target.partition("?")
    # wsproto takes these out of the headers into fields of its own: put them back
    headers: list[tuple[bytes | str, bytes | str]] = [("host", req.host)]
    if req.subprotocols:
        headers.append(("sec-websocket-protocol", ", ".join(req.subprotocols)))
    if req.extensions:
        headers.append(("sec-websocket-extensions",
                        ", ".join(e if isinstance(e, str) else e.name for e in req.extensions)))
    headers += req.extra_headers
    if opts.path is not None and path != opts.path:
        await refuse(stream, 404, f"no WebSocket at {path}")
        raise Rejected(404, f"path {path!r} is not {opts.path!r}")
    if opts.origins is not None:
        origin = header_items(headers).get("origin")
        if origin not in opts.origins:
            await refuse(stream, 403, "origin not allowed")
            raise Rejected(403, f"origin {origin!r} is not allowed" if origin
                           else "no Origin header")
    if admit is not None:
        refusal = admit()
        if refusal:
            await refuse(stream, 503, refusal)
            raise Rejected(503, refusal)
    chosen = next((p for p in opts.subprotocols if p in req.subprotocols), None)
    extra: list[tuple[str, str]] = []
    if decide is not None:
        decision = await decide(Upgrade(path, query, headers, remote, list(req.subprotocols)))
        if decision.reject is not None:
            status, body = decision.reject
            await refuse(stream, status, body)
            raise Rejected(status, body)
        if decision.subprotocol is not None:
            chosen = decision.subprotocol
        extra = decision.headers
    extensions = []
    if opts.compression and any(e.split(";")[0].strip() == "permessage-deflate"
                                for e in req.extensions):
        extensions = [BoundedDeflate(opts.limits.max_message)]
    try:
        await send_once(stream, ws.send(AcceptConnection(subprotocol=chosen,
                                                         extensions=extensions,
                                                         extra_headers=extra)))
    except STREAM_ERRORS:
        raise TransportError("the client left during the handshake") from None
    conn = ws.connection
    assert conn is not None
    if rest:
        # bytes that came with the request are WebSocket bytes (a pipelined second request
        # too: after 101 the connection speaks WebSocket); wsproto's server side drops them
        # (h11's trailing data), so the connection gets them here and `run` reads them first
        conn.receive_data(rest)
    peer = Peer(remote=remote, path=path, query=query, headers=headers, subprotocol=chosen)
    return WebSocket(stream, conn, client=False, limits=opts.limits, peer=peer, **hooks)


def http_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole HTTP/1.1 answer with a plain-text body; the connection closes after it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = (text + "\n").encode()
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


async def refuse(stream: anyio.abc.ByteStream, status: int, text: str,
                 headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer a refused request and end the connection. What the client still sends is read
    and dropped for a moment first (a half-close, then draining): closing with unread bytes
    would reset the connection, and the client could lose the answer. Bounded (4s at most)
    and shielded: a handshake timeout that passes meanwhile does not make it a drop.
    (Modules are imported beforehand: with every file descriptor in use, an import here
    could not open its file.)"""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(2):
            try:
                await stream.send(http_response(status, text, headers))
            except STREAM_ERRORS:
                pass
        await _drain_and_close(stream)


async def _drain_and_close(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.send_eof()
            budget = 1024 * 1024
            while budget > 0:
                budget -= len(await stream.receive(65536))
        # TLS cannot half-close; uvloop raises RuntimeError on a reset transport
        except (*STREAM_ERRORS, NotImplementedError, RuntimeError):
            pass
    await quiet_close(stream)


def listen_tls_context(certfile: str, keyfile: str | None, client_ca: str | None = None,
                       verify_client: bool | str | None = False) -> ssl.SSLContext:
    """The context of a wss server. With verify_client (True: required, "optional": asked
    for and checked when given) the clients' certificates must chain to client_ca, and only
    to it (a server context trusts no system CA)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_certificate(ctx, certfile, keyfile)
    if verify_client and client_ca:
        try:
            ctx.load_verify_locations(client_ca)
        except ssl.SSLError as e:  # (an OSError too)
            raise TransportError(f"client_ca '{client_ca}' holds no PEM certificate "
                                 f"({e.reason or e})") from None
        except OSError as e:
            raise TransportError(f"cannot read client_ca '{client_ca}': "
                                 f"{e.strerror or e}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL if verify_client == "optional" \
            else ssl.CERT_REQUIRED
    return ctx


async def tls_accept(stream: anyio.abc.ByteStream, ctx: ssl.SSLContext) -> TLSStream:
    """The server side of the TLS handshake, as anyio's TLSStream.wrap (not standard
    compatible: no close_notify needed), except that when OpenSSL fails the handshake (a
    client certificate missing or not trusted) its alert reaches the client before this
    raises the ssl.SSLError: TLSStream.wrap drops the alert, and the client would see the
    connection end without a reason."""
    handshake = getattr(TLSStream, "_call_sslobject_method", None)
    if handshake is None:  # another anyio: its own wrap, without the alert
        return await TLSStream.wrap(stream, server_side=True, ssl_context=ctx,
                                    standard_compatible=False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = ctx.wrap_bio(incoming, outgoing, server_side=True)
    tls = TLSStream(transport_stream=stream, standard_compatible=False,
                    _ssl_object=tls_object, _read_bio=incoming, _write_bio=outgoing)
    try:
        await handshake(tls, tls_object.do_handshake)
    except ssl.SSLError:
        alert = outgoing.read()
        if alert:
            with anyio.move_on_after(1):
                try:
                    await stream.send(alert)
                except STREAM_ERRORS:
                    pass
        raise
    return tls


def peer_subject(stream: anyio.abc.ByteStream) -> dict[str, Any] | None:
    """The subject of the certificate the client gave, as a map with the names Python's ssl
    module gives (commonName, organizationName, emailAddress...; a name the subject has more
    than once maps to the list of its values), or None: no certificate, or no TLS."""
    try:
        cert = stream.extra(TLSAttribute.peer_certificate, None)
    except Exception:  # the TLS object is gone
        return None
    if not cert:
        return None
    subject: dict[str, Any] = {}
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name not in subject:
                subject[name] = value
            elif isinstance(subject[name], list):
                subject[name].append(value)
            else:
                subject[name] = [subject[name], value]
    return subject


def tls_refusal(e: ssl.SSLError) -> str:
    """Why the server's TLS handshake with a client failed, in words."""
    if e.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "the client gave no certificate (verify_client = true requires one)"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the client's certificate is not trusted (client_ca): {e.verify_message}"
    return str(e)


def header_items(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, str]:
    """Handshake headers as a map with lower-case names (repeated headers joined by ', ')."""
    out: dict[str, str] = {}
    for name, value in headers:
        k = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out
