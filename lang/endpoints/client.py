"""A `connection` declaration at run time: connecting, reconnecting with backoff, and the
one channel it sends and receives on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from lang import ast as A
from lang.runtime.host import EndpointHost
from lang.wire.frames import Closed, close_text

if TYPE_CHECKING:
    from lang.wire.connection import WebSocket
from lang.endpoints.channel import Channel, Endpoint, closed_value, limits_of


class ClientEndpoint(Endpoint, Channel):
    """A `connection`: connects, reconnects, and is its own (single) channel."""

    role = "connection"
    evt_type = "connection"

    def __init__(self, rt: EndpointHost, decl: A.Connection) -> None:
        Endpoint.__init__(self, rt, decl)
        Channel.__init__(self, self)
        self.state = "idle"  # idle connecting open reconnecting
        self.wanted = False  # the script wants it connected (between start and stop)
        self._alive = False  # the task that connects is running
        self._restart = False  # a start came while that task was winding down
        self.scope: anyio.CancelScope | None = None  # while connecting or waiting to retry

    @property
    def label(self) -> str:
        return self.name

    def source_for_errors(self) -> Any:
        return self.source

    def url(self) -> str:
        return str(self.config["url"])

    def evt_address(self) -> Any:
        return self.ws.peer.remote if self.ws is not None and self.ws.open else None

    def expect_can_wait(self) -> bool:
        """Open, connecting, or going to reconnect."""
        if self.ws is not None and self.ws.closed is None:
            return True
        return self.wanted and (self.state == "connecting" or bool(self.config["reconnect"]))

    # ------------------------------------------------------------ start / stop
    #
    # One task (`_life`) per connection at a time: it connects, runs the session and
    # reconnects while the script wants the connection. `stop` ends what it is doing; a
    # `start` that comes while it is still winding down (the close handshake, the stop event)
    # does not start a second one: it tells this one to connect again (`_restart`).

    async def evt_start(self, span: A.Span) -> None:
        if self.wanted:
            self.verbose("already started")
            return
        await self.evaluate_config()
        if self.wanted:  # started meanwhile (the configuration may wait)
            return
        self.max_queue = int(self.config["max_queue"])
        self.wanted = True
        if self._alive:
            self._restart = True
            return
        self._alive = True
        self.rt.hold()
        self.rt.spawn(self._life)

    async def evt_stop(self, span: A.Span) -> None:
        self.wanted = False
        self._restart = False
        if self.scope is not None:
            self.scope.cancel()  # connecting, or waiting to reconnect
        ws = self.ws
        if ws is not None and ws.closed is None:
            await ws.close(1000, "")

    async def _life(self) -> None:
        """Connect, run the session, and reconnect with backoff while wanted; connect again
        at once after a stop when a start came meanwhile."""
        from lang.wire.client import connect
        from lang.wire.frames import TransportError

        delay = 0.0
        self._restart = True
        try:
            while self.wanted:
                if self._restart:  # a (new) start: its configuration, no backoff
                    self._restart = False
                    delay = float(self.config["reconnect_min"])
                cfg = self.config
                ws = None
                failure = None
                with anyio.CancelScope() as scope:
                    self.scope = scope
                    self.state = "connecting"
                    self.verbose(f"connecting to {self.url()}")
                    try:
                        ws = await connect(self._options(), on_failure=self._failure,
                                           on_frame=self.tracer(self.name))
                    except TransportError as e:
                        failure = e
                self.scope = None
                if ws is not None and (self._restart or not self.wanted):
                    await ws.close(1000, "")  # stopped (and started again) as it connected
                    continue
                if ws is None:
                    if failure is None:  # cancelled by `stop`
                        continue
                    self.report_error(f"{self.name}: {failure} ({self.url()})", self)
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
            self.rt.release()

    async def _backoff(self, delay: float) -> float:
        import random

        cfg = self.config
        pause = min(delay, float(cfg["reconnect_max"])) * random.uniform(0.8, 1.2)
        self.state = "reconnecting"
        self.verbose(f"reconnecting in {pause:.2f}s")
        await anyio.sleep(pause)
        return min(delay * 2, float(cfg["reconnect_max"]))

    def _options(self) -> Any:
        from lang.wire.client import ClientOptions

        cfg = self.config
        return ClientOptions(
            url=self.url(), port=cfg["port"], headers=dict(cfg["headers"]),
            subprotocols=list(cfg["subprotocols"]), connect_timeout=float(cfg["connect_timeout"]),
            compression=bool(cfg["compression"]), verify_tls=bool(cfg["verify_tls"]),
            ca_file=cfg["ca_file"], limits=limits_of(cfg))

    def _failure(self, why: str) -> None:
        self.report_error(f"{self.name}: {why}", self)

    async def _session(self, ws: WebSocket) -> Closed:
        self.ws = ws
        self.state = "open"
        sub = f" (subprotocol {ws.peer.subprotocol})" if ws.peer.subprotocol else ""
        self.verbose(f"connected to {self.url()}{sub}")
        self.post_event("start", None)
        ws.spawn = self.rt.spawn
        self.rt.keep_alive(ws)
        closed = await ws.run(self.on_message)
        self.verbose(f"closed {close_text(closed.code, closed.reason)}"
                     f"{'' if closed.clean else ', not clean'}")
        self.wake_expect()
        self.post_event("stop", closed_value(closed))
        return closed

    async def shutdown(self) -> None:
        ws = self.ws
        self.wanted = False
        self._restart = False
        if ws is not None and ws.closed is None:
            await ws.close(1001, "")
