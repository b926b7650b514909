"""The server role: `server NAME { listen = ... }`, its peers, and broadcast.

Rules of this module (beyond Incari, which has no server):
- `start NAME` binds before the statement completes, so `address(NAME)` works on the next
  line; the server writes `NAME: listening on ws://HOST:PORT/` to standard error.
- Each peer is one task and one source: its events run one at a time, in order.
- Handshake refusals are answered with an HTTP response (404 path, 403 origin, 503 full, 400
  not a WebSocket request, 400 plain HTTP to a TLS port); a client that does not finish within
  handshake_timeout is dropped.
- `max_clients` counts every connection from its TCP accept: clients still in their
  handshake hold a place too (a client over the count gets 503 once its request is read).
- The accept loop never ends the server: out of file descriptors (EMFILE, ENFILE, ENOBUFS,
  ENOMEM) or any other accept error is reported as an error event of the server (at most once
  a minute) and accepting backs off (0.1s, doubling to 1s) while the clients it has are served,
  as asyncio's own accept loop and nginx do.
- `broadcast` never waits for a peer: it queues the message on each peer's outbox. A peer with
  more than max(1 MiB, max_message) bytes still waiting is too slow to keep up: it gets an
  error event and is closed with 1008 (policy violation).
- `stop NAME` and the program's end close every peer with 1001 and a close handshake.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import ssl
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.abc

from lang import ast as A
from lang.config import split_listen, tls_problems
from lang.endpoints.channel import (
    Channel,
    Endpoint,
    closed_value,
    encode,
    limits_of,
    payload_size,
)
from lang.endpoints.requests import decider
from lang.endpoints.rooms import Rooms
from lang.errors import EvtRuntimeError
from lang.runtime.host import EndpointHost
from lang.values import to_str, type_name
from lang.wire.connection import WebSocket, address_text
from lang.wire.frames import Closed, TransportError, close_text
from lang.wire.server import (
    Rejected,
    ServerOptions,
    accept,
    header_items,
    listen_tls_context,
    peer_subject,
    refuse,
    tls_accept,
    tls_refusal,
)

_READ_ONLY = ("id", "remote", "path", "query", "headers", "subprotocol", "cert")
ACCEPT_BACKOFF = (0.1, 1.0)  # seconds: the first wait after a failed accept, the longest
ACCEPT_REPORT_EVERY = 60.0  # seconds: at most one error event for failing accepts
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class PeerChannel(Channel):
    """One client of a server: the value `from P` binds."""

    evt_type = "peer"
    is_client_side = False
    __slots__ = ("_headers", "_query", "fields", "id", "server")

    def __init__(self, server: ServerEndpoint, ws: WebSocket, ident: int) -> None:
        super().__init__(server)
        self.server = server
        self.ws = ws
        self.id = ident
        self.fields: dict[str, Any] = {}
        self._query: dict[str, str] | None = None
        self._headers: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<peer {self.id} {self.ws.peer.remote if self.ws else ''}>"

    def __str__(self) -> str:
        return repr(self)

    @property
    def label(self) -> str:
        return f"{self.server.name} peer {self.id} ({self.ws.peer.remote if self.ws else ''})"

    def evt_address(self) -> Any:
        return self.ws.peer.remote if self.ws is not None else None

    def handshake_record(self) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
        """The client's request and the response as this server answered it."""
        ws = self.ws
        assert ws is not None
        peer = ws.peer
        request = list(header_items(peer.headers).items())
        scheme = "wss" if self.server.secure else "ws"
        host = next((v for k, v in request if k.lower() == "host"), self.server.address or "")
        url = f"{scheme}://{host}{peer.path}" + (f"?{peer.query}" if peer.query else "")
        key = next((v for k, v in request if k.lower() == "sec-websocket-key"), "")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        response = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", accept)]
        if peer.subprotocol:
            response.append(("Sec-WebSocket-Protocol", peer.subprotocol))
        return url, request, response

    def evt_get(self, name: str, span: A.Span) -> Any:
        ws = self.ws
        assert ws is not None
        if name == "id":
            return self.id
        if name == "remote":
            return ws.peer.remote
        if name == "path":
            return ws.peer.path
        if name == "query":
            if self._query is None:
                self._query = dict(parse_qsl(ws.peer.query, keep_blank_values=True))
            return self._query
        if name == "headers":
            if self._headers is None:
                self._headers = header_items(ws.peer.headers)
            return self._headers
        if name == "subprotocol":
            return ws.peer.subprotocol
        if name == "cert":  # SPEC §15: the client certificate's subject, or null
            return peer_subject(ws.stream)
        return self.fields.get(name)  # a field the script never set reads as null

    def evt_set(self, name: str, value: Any, span: A.Span) -> None:
        if name in _READ_ONLY:
            raise EvtRuntimeError(f"a peer's '{name}' is read-only", span)
        self.fields[name] = value

    def opened(self) -> None:
        """The handshake is done: the start event, keep-alive."""
        ws = self.ws
        assert ws is not None
        self.server.verbose(f"peer {self.id} connected from {ws.peer.remote}")
        self.session_began()
        self.post_event("start", None)
        ws.spawn = self.rt.spawn
        if self.tally is not None:
            ws.on_pong = self.tally.ping.add
        self.rt.keep_alive(ws)

    def ended(self, closed: Closed) -> None:
        """The connection is over: a waiting `expect` gives up, the stop event."""
        self.server.verbose(f"peer {self.id} closed {close_text(closed.code, closed.reason)}"
                            f"{'' if closed.clean else ', not clean'}")
        self.wake_expect()
        self.server.left(self)
        self.post_event("stop", closed_value(closed))

    def evt_rooms(self) -> list:
        return self.server.rooms.of(self)


class ServerEndpoint(Endpoint):
    """A `server`: a listener and its peers."""

    role = "server"
    evt_type = "server"

    def __init__(self, rt: EndpointHost, decl: A.Server) -> None:
        super().__init__(rt, decl)
        from lang.runtime.sources import Source

        self.source = Source(rt)  # server-level events (a listen failure)
        self.peers: dict[int, PeerChannel] = {}
        self.address: str | None = None
        self.scope: anyio.CancelScope | None = None  # while listening
        self.next_id = 1
        self.admitted = 0  # connections holding a place of max_clients (handshakes too)
        self._accept_reported: float | None = None  # when a failing accept was reported
        self._tls: ssl.SSLContext | None = None
        self._opts: ServerOptions | None = None
        self._handshakes: set[anyio.CancelScope] = set()  # clients still in their handshake
        self.rooms = Rooms()  # SPEC §16

    def source_for_errors(self) -> Any:
        return self.source

    def evt_address(self) -> Any:
        return self.address

    @property
    def secure(self) -> bool:
        """Whether it serves wss://."""
        return self._tls is not None

    def evt_peers(self) -> list:
        return [p for p in self.peers.values() if p.ws is not None and p.ws.open]

    def evt_cluster_peers(self) -> int:
        return len(self.evt_peers()) + self.rt.cluster.peers_elsewhere(self.name)

    # ------------------------------------------------------------ rooms (SPEC §16)

    async def evt_join(self, peer: PeerChannel, room: str) -> None:
        if peer.ws is None or not peer.ws.open:
            return  # a closed peer is in no room
        if self.rooms.join(peer, room):
            await self.rt.cluster.room_joined(self.name, room)

    async def evt_leave(self, peer: PeerChannel, room: str) -> None:
        if self.rooms.leave(peer, room):
            await self.rt.cluster.room_left(self.name, room)

    def left(self, peer: PeerChannel) -> None:
        """A peer that closed leaves its rooms."""
        for room in self.rooms.leave_all(peer):
            self.rt.spawn(self.rt.cluster.room_left, self.name, room)

    # ------------------------------------------------------------ start / stop

    async def evt_start(self, span: A.Span) -> None:
        if self.scope is not None:
            self.verbose("already listening")
            return
        await self.evaluate_config()
        self.max_queue = int(self.config["max_queue"])
        self._opts = None
        cfg = self.config
        listen = str(cfg["listen"])
        try:
            host, port = split_listen(listen)
            problems = tls_problems("server", self.name, cfg)  # certfile, client_ca...
            if problems:
                raise ValueError(problems[0])
            if cfg["certfile"]:
                self._tls = listen_tls_context(str(cfg["certfile"]), cfg["keyfile"],
                                               cfg["client_ca"], cfg["verify_client"])
            listener = await anyio.create_tcp_listener(
                local_host=host, local_port=port, reuse_port=bool(os.environ.get("EVT_WORKERS")))
        except (ValueError, TransportError) as e:
            self.report_error(f"{self.name}: cannot listen on {listen}: {e}", None)
            return
        except OSError as e:
            self.report_error(f"{self.name}: cannot listen on {listen}: "
                              f"{e.strerror or e}", None)
            return
        sock = listener.listeners[0]
        bound = sock.extra(anyio.abc.SocketAttribute.local_address)
        shown_host = host if host not in ("", "0.0.0.0", "::") else bound[0]
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        self.address = f"{shown_host}:{bound[1]}"
        scheme = "wss" if self._tls is not None else "ws"
        self.rt.log(f"{self.name}: listening on {scheme}://{self.address}/")
        self.scope = anyio.CancelScope()
        self.rt.hold()
        self.rt.spawn(self._serve, listener, self.scope)

    async def _serve(self, listener: anyio.abc.Listener, scope: anyio.CancelScope) -> None:
        """Accept until stopped. Peers run in a task group of their own, outside the
        listening scope: `stop NAME` from a peer's own handler must not cancel that handler,
        and stopping to listen must not cut the close handshakes short."""
        try:
            async with anyio.create_task_group() as peers:
                with scope:
                    async with listener, anyio.create_task_group() as accepting:
                        for one in getattr(listener, "listeners", [listener]):
                            accepting.start_soon(self._accept, one, scope, peers)
        finally:
            if self.scope is scope:
                self.scope = None
                self.address = None
            self.rt.release()

    async def _accept(self, listener: anyio.abc.Listener, listening: anyio.CancelScope,
                      peers: anyio.abc.TaskGroup) -> None:
        """Accept until cancelled; a failing accept backs off and is reported, never fatal.
        Each connection takes its place of max_clients here, before its handshake."""
        wait = 0.0
        while True:
            try:
                stream = await listener.accept()
            except ConnectionAbortedError:
                continue  # the client left before it was accepted
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as e:
                self._accept_failed(e)
                wait = min(wait * 2, ACCEPT_BACKOFF[1]) if wait else ACCEPT_BACKOFF[0]
                await anyio.sleep(wait)
                continue
            wait = 0.0
            placed = self.admitted < int(self.config["max_clients"])
            if placed:
                self.admitted += 1
            peers.start_soon(self._client, listening, stream, placed)

    def _accept_failed(self, e: OSError) -> None:
        now = anyio.current_time()
        if self._accept_reported is not None \
                and now - self._accept_reported < ACCEPT_REPORT_EVERY:
            return
        self._accept_reported = now
        cause = e.strerror or str(e) or type(e).__name__
        code = errno.errorcode.get(e.errno or 0, "")
        why = f"{cause} ({code})" if code else cause
        if e.errno in _OUT_OF_RESOURCES:
            why += (f"; {len(self.peers)} clients connected: raise the limit (ulimit -n) or "
                    "lower max_clients")
        self.report_error(f"{self.name}: cannot accept connections: {why}; retrying "
                          "(reported at most once a minute)", None)

    async def evt_stop(self, span: A.Span) -> None:
        """Stop listening, and close every peer with 1001 (waiting for their close
        handshakes)."""
        scope = self.scope
        if scope is None:
            return
        self.verbose("stopping")
        self.scope = None
        self.address = None
        scope.cancel()
        for handshake in list(self._handshakes):
            handshake.cancel()  # clients still in their handshake are dropped
        await self._close_peers(1001)

    async def _close_peers(self, code: int) -> None:
        me = anyio.get_current_task().id
        async with anyio.create_task_group() as tg:
            for peer in list(self.peers.values()):
                ws = peer.ws
                if ws is None or ws.closed is not None:
                    continue
                if ws._reader_id == me and ws._reading:
                    await ws.close(code, "")  # our own reader: it finishes the handshake
                else:
                    tg.start_soon(ws.close, code, "")

    async def shutdown(self) -> None:
        await self._close_peers(1001)
        if self.scope is not None:
            self.scope.cancel()

    # ------------------------------------------------------------ one client

    def _options(self) -> ServerOptions:
        """The transport's options, made once per `start` and shared by every peer."""
        if self._opts is not None:
            return self._opts
        cfg = self.config
        self._opts = ServerOptions(path=cfg["path"], origins=cfg["origins"],
                             subprotocols=list(cfg["subprotocols"]),
                             handshake_timeout=float(cfg["handshake_timeout"]),
                             compression=bool(cfg["compression"]), limits=limits_of(cfg))
        return self._opts

    async def _client(self, listening: anyio.CancelScope, stream: anyio.abc.ByteStream,
                      placed: bool) -> None:
        """One client, from its handshake to its end. `listening` is the scope of the
        `start` that accepted it: once that server stopped, the handshake is refused.
        `placed`: it holds a place of max_clients (given back here at its end); without one
        its handshake is refused with 503. (One function for the whole connection, and the
        handshake in one that returns: each suspended frame costs memory for every idle
        connection.)"""

        def admit() -> str | None:
            if self.scope is not listening:  # stopped since the TCP connection came
                return "server stopped"
            if not placed:
                return f"server full ({self.config['max_clients']} clients)"
            return None

        try:
            carried: dict[str, Any] = {}  # what `on websocket request` set on R
            ws = await self._handshake(stream, listening, admit, carried)
            if ws is None:
                return
            peer = PeerChannel(self, ws, self.next_id)
            peer.fields.update(carried)
            self.next_id += 1
            ws.on_failure = lambda why: self.report_error(f"{peer.label}: {why}", peer)
            self.peers[peer.id] = peer
            try:
                peer.opened()
                try:
                    closed = await ws.run(peer.on_message)
                finally:
                    peer.session_ended()
                peer.ended(closed)
            finally:
                if not self.rt.stopping:  # at the program's end the shutdown closes it
                    del self.peers[peer.id]
        except Exception:  # a bug of ours must not take the listener down
            self.rt.internal_error(f"server {self.name}")
            await _close_quietly(stream)
        finally:
            if placed:
                self.admitted -= 1

    async def _handshake(self, stream: anyio.abc.ByteStream, listening: anyio.CancelScope,
                         admit: Any, carried: dict[str, Any]) -> WebSocket | None:
        """TLS and the opening handshake; None when the client was refused or dropped (a
        `stop` drops the clients still in their handshake)."""
        remote = address_text(stream, "?")
        if self.scope is not listening:
            self.verbose(f"dropped {remote}: the server stopped")
            await _close_quietly(stream)
            return None
        opts = self._options()
        ws = None
        with anyio.CancelScope() as handshake:
            self._handshakes.add(handshake)
            try:
                if self._tls is not None:
                    stream = await self._wrap_tls(stream, opts.handshake_timeout)
                ws = await accept(stream, opts, remote, admit=admit,
                                  decide=decider(self.rt, self.name, carried,
                                                 lambda: peer_subject(stream)),
                                  on_frame=self.tracer(f"{self.name} {remote}"))
            except Rejected as e:
                self.verbose(f"refused {remote}: HTTP {e.status} ({e.reason})")
                return None
            except TransportError as e:
                self.verbose(f"dropped {remote}: {e}")
                await _close_quietly(stream)
                return None
            finally:
                self._handshakes.discard(handshake)
        if ws is None or self.scope is not listening:  # `stop` came during the handshake
            self.verbose(f"dropped {remote}: the server stopped")
            if ws is not None:
                await ws.abort()
            else:
                await _close_quietly(stream)
            return None
        return ws

    async def _wrap_tls(self, stream: anyio.abc.ByteStream, timeout: float) -> Any:
        assert self._tls is not None
        try:
            with anyio.fail_after(timeout if timeout > 0 else 1e9):
                return await tls_accept(stream, self._tls)  # a refusal's alert sent
        except TimeoutError:
            raise TransportError("TLS handshake not finished in time") from None
        except ssl.SSLError as e:
            if e.reason in ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST"):  # as nginx answers it
                await refuse(stream, 400, "plain HTTP request to a TLS (wss://) port: use "
                                          "wss:// (or https://)")
                raise Rejected(400, "plain HTTP request to a TLS port") from None
            raise TransportError(f"TLS handshake failed: {tls_refusal(e)}") from None
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            raise TransportError(f"TLS handshake failed: {e}") from None

    # ------------------------------------------------------------ broadcast

    async def evt_broadcast(self, value: Any, mode: str | None, except_: Any,
                            span: A.Span, room: str | None = None) -> None:
        if except_ is not None and getattr(except_, "evt_type", None) != "peer":
            raise EvtRuntimeError(f"broadcast ... except needs a peer, got {type_name(except_)}",
                                  span)
        try:
            data = encode(value, mode)
        except EvtRuntimeError as e:
            e.span = span
            raise
        self.deliver(data, room, except_)
        self.rt.cluster.broadcast(self.name, room, except_, data)

    def deliver(self, data: str | bytes, room: str | None, except_: Any) -> None:
        """A broadcast to this process's peers (all, or a room's members), from this process
        or, through the cluster, from another."""
        sent = 0
        peers = self.peers.values() if room is None else self.rooms.in_room(room)
        for peer in list(peers):
            ws = peer.ws
            if peer is except_ or ws is None or not ws.open:
                continue
            if not ws.enqueue(data):  # the error event comes from fail()
                self.rt.spawn(ws.fail, 1008, f"too slow to keep up with broadcasts "
                              f"({to_str(ws.out_limit)} bytes waiting)", "too slow")
            else:
                sent += 1
                if peer.recording is not None:
                    peer.recording.message(False, data)
        if sent and self.tally is not None:
            self.tally.msgs_sent += sent
            self.tally.data_sent += sent * payload_size(data)


async def _close_quietly(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.aclose()
        except Exception:
            pass
