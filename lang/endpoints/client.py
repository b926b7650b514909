"""A `connection` declaration at run time, and its connections (SPEC §11): the one
`start NAME` makes, and any number made by `open NAME [with MAP]`.

Rules of this module:
- A ClientConnection is one connection: its own configuration, its own source (its events
  run one at a time, in order), connecting and reconnecting with backoff in one task. The
  declaration (ClientEndpoint) is itself the connection `start NAME` makes, so the bare name
  is that connection's handle, as in Part 1; an opened one is labelled `NAME#ID`.
- Every connection fires the declaration's handlers, with `from` bound to its handle.
- A connection is a member of its declaration (`connections(NAME)`) from its start or open
  until it will not connect again; while a member it keeps the program alive.
- `close c` is a close the script wanted: the connection does not reconnect (`reconnect` is
  for unexpected closes and failed attempts). `stop NAME` closes every member (1000), stops
  their reconnecting and waits for the close handshakes; the program's end closes them with
  1001, and every connection whose session was cut short (a `close` the end cancelled).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from lang import ast as A
from lang import config
from lang.endpoints.channel import Channel, Endpoint, clock, closed_value, limits_of
from lang.errors import EvtRuntimeError
from lang.runtime.host import EndpointHost
from lang.values import type_name
from lang.wire.client import ClientOptions, connect, proxy_for
from lang.wire.frames import Closed, TransportError, close_text
from lang.wire.server import header_items

if TYPE_CHECKING:
    from lang.wire.connection import WebSocket

READ_ONLY = ("id", "name", "url", "remote", "subprotocol", "headers")


class ClientConnection(Channel):
    """One client connection of a declaration: the value `from c` binds on its events."""

    evt_type = "connection"
    __slots__ = ("_alive", "_restart", "config", "fields", "first", "go", "ident", "overrides",
                 "scope", "state", "wanted")

    def __init__(self, endpoint: ClientEndpoint, cfg: dict[str, Any], ident: int) -> None:
        Channel.__init__(self, endpoint)
        self.setup(cfg, ident)

    def setup(self, cfg: dict[str, Any], ident: int) -> None:
        self.config = cfg
        self.overrides: dict[str, Any] | None = None  # an `open ... with` map, judged
        self.ident = ident
        self.max_queue = int(cfg["max_queue"])
        self.state = "idle"  # idle connecting open reconnecting
        self.wanted = False  # the script wants it connected (from start/open to stop/close)
        self._alive = False  # the task that connects is running
        self._restart = False  # a start came while that task was winding down
        self.scope: anyio.CancelScope | None = None  # while connecting or waiting to retry
        self.fields: dict[str, Any] | None = None  # what the script assigned to the handle
        self.first: anyio.Event | None = None  # an `open` waiting for the first attempt
        self.go: anyio.Event | None = None  # set once that `open`'s caller went on

    def __repr__(self) -> str:
        return f"<connection {self.label}>"

    def __str__(self) -> str:
        return repr(self)

    @property
    def label(self) -> str:
        return f"{self.endpoint.name}#{self.ident}"

    def say(self, text: str) -> None:
        """A line for `-v`, naming this connection."""
        if self.rt.verbose:
            self.rt.log(f"{self.label}: {text}")

    def url(self) -> str:
        return str(self.config["url"])

    def evt_address(self) -> Any:
        return self.ws.peer.remote if self.ws is not None and self.ws.open else None

    def expect_can_wait(self) -> bool:
        """Open, connecting, or going to reconnect."""
        if self.ws is not None and self.ws.closed is None:
            return True
        return self.wanted and (self.state == "connecting" or bool(self.config["reconnect"]))

    # ------------------------------------------------------------ fields

    def evt_get(self, name: str, span: A.Span) -> Any:
        ws = self.ws
        if name == "id":
            return self.ident
        if name == "name":
            return self.endpoint.name
        if name == "url":
            return self.config["url"]  # (null before the started one's first start)
        if name == "remote":
            return self.evt_address()
        if name == "subprotocol":
            return ws.peer.subprotocol if ws is not None else None
        if name == "headers":
            return header_items(ws.peer.headers) if ws is not None else {}
        return self.fields.get(name) if self.fields is not None else None

    def evt_set(self, name: str, value: Any, span: A.Span) -> None:
        if name in READ_ONLY:
            raise EvtRuntimeError(f"a connection's '{name}' is read-only", span)
        if self.fields is None:
            self.fields = {}
        self.fields[name] = value

    # ------------------------------------------------------------ life
    #
    # One task (`_life`) per connection at a time: it connects, runs the session and
    # reconnects while the script wants the connection. `stop`/`close` end what it is doing;
    # a `start` that comes while it is still winding down (the close handshake, the stop
    # event) does not start a second one: it tells this one to connect again (`_restart`).

    def begin(self) -> None:
        """Want the connection and run its task (or tell the running one to start again)."""
        self.wanted = True
        self.endpoint.members[self] = None
        if self._alive:
            self._restart = True
            return
        self._alive = True
        # connecting from now on, not once its task runs: an `expect` right after `start`
        # waits for the connection (SPEC §13's first example) instead of failing at once
        self.state = "connecting"
        self.rt.hold()
        self.rt.spawn(self._life)

    def end(self) -> WebSocket | None:
        """Stop wanting the connection: no more attempts, and it leaves its declaration's
        connections at once. The socket still to close, if any."""
        self.wanted = False
        self._restart = False
        self.endpoint.members.pop(self, None)
        if self.scope is not None:
            self.scope.cancel()  # connecting, or waiting to reconnect
        ws = self.ws
        return ws if ws is not None and ws.closed is None else None

    async def evt_close(self, code: int, reason: str, span: A.Span) -> None:
        ws = self.end()
        if ws is not None:
            if self.recording is not None:
                self.recording.closing(code, reason)
            await ws.close(code, reason)

    def handshake_record(self) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
        """The request as this connection sent it (its key is not kept: it is random) and
        the server's response headers."""
        ws = self.ws
        assert ws is not None
        url = self.url()
        host = urlsplit(url).netloc.rpartition("@")[2]
        request = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Version", "13")]
        protocols = list(self.config["subprotocols"])
        if protocols:
            request.append(("Sec-WebSocket-Protocol", ", ".join(map(str, protocols))))
        request += [(str(k), str(v)) for k, v in dict(self.config["headers"]).items()]
        response = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        if ws.peer.subprotocol:
            response.append(("Sec-WebSocket-Protocol", ws.peer.subprotocol))
        # wsproto keeps only the headers past the handshake's own (and its accept key)
        return url, request, response + list(header_items(ws.peer.headers).items())

    async def _life(self) -> None:
        """Connect, run the session, and reconnect with backoff while wanted; connect again
        at once after a stop when a start came meanwhile."""
        delay = 0.0
        self._restart = True
        try:
            while self.wanted:
                if self._restart:  # a (new) start: its configuration, no backoff
                    self._restart = False
                    delay = float(self.config["reconnect_min"])
                else:  # a reconnect: the configuration again (a refreshed token)
                    await self._reconfigure()
                cfg = self.config
                ws = None
                failure = None
                with anyio.CancelScope() as scope:
                    self.scope = scope
                    self.state = "connecting"
                    if self.rt.verbose:  # (the words cost more than the rest of a line)
                        self.say(f"connecting to {self.url()}")
                    began = clock()
                    try:
                        ws = await connect(self._options(), on_failure=self._failure,
                                           on_frame=self.endpoint.tracer(self.label))
                    except TransportError as e:
                        failure = e
                    else:
                        if self.tally is not None:  # ws_connecting: TCP + TLS + handshake
                            self.tally.connecting.add(clock() - began)
                self.scope = None
                if ws is not None and (self._restart or not self.wanted):
                    await ws.close(1000, "")  # stopped (and started again) as it connected
                    continue
                if ws is None:
                    if failure is None:  # cancelled by `stop` or `close`
                        continue
                    if not cfg["reconnect"]:  # it will not connect again: `open` says so
                        self.endpoint.members.pop(self, None)
                    await self._first_over()
                    self.endpoint.report_error(f"{self.label}: {failure} ({self.url()})", self)
                else:
                    delay = float(cfg["reconnect_min"])
                    await self._session(ws)
                if self._restart:
                    continue
                if not (cfg["reconnect"] and self.wanted):
                    break
                with anyio.CancelScope() as scope:
                    self.scope = scope
                    delay = await self._backoff(delay)
                self.scope = None
        finally:
            self.scope = None
            self.state = "idle"
            self.wanted = False
            self._restart = False
            self._alive = False
            if self.first is not None:
                self.first.set()
            self.endpoint.members.pop(self, None)
            self.rt.release()

    async def _reconfigure(self) -> None:
        """SPEC §15: the configuration is evaluated at every attempt. It runs as an event of
        this connection's source, after the events queued there (the error handler that
        refreshes a token the headers read); a runtime error in it is reported, and the
        attempt uses the configuration it had."""
        done = anyio.Event()

        async def job() -> None:
            try:
                endpoint = self.endpoint
                if self is endpoint:
                    await endpoint.evaluate_config()
                else:
                    cfg = config.defaults(endpoint.role)
                    await endpoint.evaluate_config(cfg)
                    cfg.update(self.overrides or {})
                    self.config = cfg
            except Exception as e:
                self.rt.failure(e, f"the configuration of {self.endpoint.name}",
                                getattr(e, "span", self.endpoint.span))
            finally:
                done.set()

        if self.rt.shutting_down or self.rt.stopping:
            return
        self.source.post(job)
        await done.wait()

    async def _first_over(self) -> None:
        """The first attempt of an opened connection is over: `open` returns, and this
        connection's events wait until its caller went on (to its next wait, or its end),
        so that what the caller sets on the handle right after `open` (a field its handlers
        read) is there for the first of them."""
        first, go = self.first, self.go
        if first is None or go is None:
            return
        self.first = self.go = None
        first.set()
        await go.wait()

    async def _backoff(self, delay: float) -> float:
        cfg = self.config
        pause = min(delay, float(cfg["reconnect_max"])) * random.uniform(0.8, 1.2)
        self.state = "reconnecting"
        self.say(f"reconnecting in {pause:.2f}s")
        await anyio.sleep(pause)
        return min(delay * 2, float(cfg["reconnect_max"]))

    def _options(self) -> ClientOptions:
        cfg = self.config
        opts = ClientOptions(
            url=self.url(), port=cfg["port"], headers=dict(cfg["headers"]),
            subprotocols=list(cfg["subprotocols"]), connect_timeout=float(cfg["connect_timeout"]),
            compression=bool(cfg["compression"]), verify_tls=bool(cfg["verify_tls"]),
            ca_file=cfg["ca_file"], certfile=cfg["certfile"], keyfile=cfg["keyfile"],
            limits=limits_of(cfg))
        # SPEC §15: the key's proxy, or the environment's (read at each attempt, as the
        # rest); a bad one is this attempt's TransportError
        opts.proxy = cfg["proxy"]
        proxy = opts.proxy = proxy_for(opts)
        if proxy is not None:
            self.say(f"through proxy {proxy}" + (f" (from {proxy.source})" if proxy.source
                                                 else ""))
        return opts

    def _failure(self, why: str) -> None:
        self.endpoint.report_error(f"{self.label}: {why}", self)

    async def _session(self, ws: WebSocket) -> Closed:
        self.ws = ws
        self.state = "open"
        if self.rt.verbose:
            sub = f" (subprotocol {ws.peer.subprotocol})" if ws.peer.subprotocol else ""
            self.say(f"connected to {self.url()}{sub}")
        await self._first_over()
        self.session_began()
        self.post_event("start", None)
        ws.spawn = self.rt.spawn
        if self.tally is not None:
            ws.on_pong = self.tally.ping.add
        self.rt.keep_alive(ws)
        live = self.endpoint.live
        live[self] = None  # until its session is over, whatever cut it short
        try:
            closed = await ws.run(self.on_message)
        finally:
            self.session_ended()
        live.pop(self, None)
        if self.rt.verbose:
            self.say(f"closed {close_text(closed.code, closed.reason)}"
                     f"{'' if closed.clean else ', not clean'}")
        self.wake_expect()
        self.post_event("stop", closed_value(closed))
        return closed


class ClientEndpoint(Endpoint, ClientConnection):
    """A `connection` declaration: a template of connections (`open`), and itself the one
    `start NAME` makes."""

    role = "connection"
    evt_type = "connection"

    def __init__(self, rt: EndpointHost, decl: A.Connection) -> None:
        Endpoint.__init__(self, rt, decl)
        Channel.__init__(self, self)
        self.setup(self.config, 0)
        self.members: dict[ClientConnection, None] = {}  # in the order they began
        self.live: dict[ClientConnection, None] = {}  # whose session is not over
        self.last_ident = 0

    @property
    def label(self) -> str:
        return self.name

    def say(self, text: str) -> None:
        self.verbose(text)

    def source_for_errors(self) -> Any:
        return self.source

    def new_ident(self) -> int:
        self.last_ident += 1
        return self.last_ident

    def evt_connections(self) -> list[ClientConnection]:
        return list(self.members)

    async def evt_start(self, span: A.Span) -> None:
        if self.wanted:
            self.verbose("already started")
            return
        await self.evaluate_config()
        if self.wanted:  # started meanwhile (the configuration may wait)
            return
        self.max_queue = int(self.config["max_queue"])
        if not self.ident:
            self.ident = self.new_ident()
        self.begin()

    async def evt_stop(self, span: A.Span) -> None:
        await self._close_all(1000)

    async def evt_open(self, overrides: Any, span: A.Span) -> ClientConnection:
        """A new connection of this declaration, its keys overridden by a map; returned once
        its handshake is done or its first attempt failed."""
        cfg = config.defaults(self.role)
        await self.evaluate_config(cfg)
        if overrides is not None:
            if type(overrides) is not dict:
                raise EvtRuntimeError(f"'open {self.name} with' needs a map of connection keys, "
                                      f"got {type_name(overrides)}", span)
            keys = config.keys_for(self.role)
            for key, value in overrides.items():
                if key not in keys:
                    raise EvtRuntimeError(f"open {self.name}: "
                                          f"{config.unknown_key_message(self.role, key)}", span)
                problem = config.problem(self.role, key, value)
                if problem:
                    raise EvtRuntimeError(f"open {self.name}: {problem}", span)
                cfg[key] = config.value_for(self.role, key, value)
        conn = ClientConnection(self, cfg, self.new_ident())
        if overrides:
            conn.overrides = {k: cfg[k] for k in overrides}
        first, go = conn.first, conn.go = anyio.Event(), anyio.Event()
        conn.begin()
        try:
            await first.wait()
        finally:
            go.set()  # its events may begin once this caller goes on (or was cancelled)
        return conn

    async def _close_all(self, code: int) -> None:
        every = dict.fromkeys([self, *self.members, *self.live])
        closing = []
        for c in every:
            ws = c.end()
            if ws is None:
                continue
            if c.inline:  # a handler running in its reader (maybe this one): the close is
                await ws.close(code, "")  # sent here, the reader finishes the handshake
            else:
                closing.append(ws)
        if len(closing) == 1:
            await closing[0].close(code, "")
        elif closing:
            async with anyio.create_task_group() as tg:
                for ws in closing:
                    tg.start_soon(ws.close, code, "")

    async def shutdown(self) -> None:
        await self._close_all(1001)
