"""The server role: accept, bound and answer the opening handshake, hand over a WebSocket
(it knows nothing of evt)."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    RejectConnection,
    Request,
)
from wsproto.utilities import RemoteProtocolError

from lang.wire.client import quiet_close
from lang.wire.connection import Peer, WebSocket
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


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def accept(stream: anyio.abc.ByteStream, opts: ServerOptions, remote: str,
                 admit: Callable[[], str | None] | None = None, **hooks: Any) -> WebSocket:
    """The server side of the opening handshake, within handshake_timeout. Refusals are
    answered with an HTTP response and raise Rejected; a client that stalls or speaks
    something else raises TransportError. `admit` may refuse with 503 (its reason). The
    request head is bounded (lang.wire.http_request) whatever the reads; what came after it in
    the same reads is the client's first WebSocket bytes, kept for the connection."""
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
                                         **hooks)
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
                  rest: bytes, **hooks: Any) -> WebSocket:
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
    extensions = []
    if opts.compression and any(e.split(";")[0].strip() == "permessage-deflate"
                                for e in req.extensions):
        extensions = [BoundedDeflate(opts.limits.max_message)]
    try:
        await stream.send(ws.send(AcceptConnection(subprotocol=chosen, extensions=extensions)))
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


def listen_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(f"cannot load certfile/keyfile: {e}") from None
    return ctx


def header_items(headers: Iterable[tuple[bytes | str, bytes | str]]) -> dict[str, str]:
    """Handshake headers as a map with lower-case names (repeated headers joined by ', ')."""
    out: dict[str, str] = {}
    for name, value in headers:
        k = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out
