"""The language side of WebSocket: connections, servers and peers as running objects.

Rules of this module:
- An endpoint's configuration is compiled with the program and evaluated once at start,
  after the project variables, then judged against lang.config.
- A Channel is one live WebSocket seen from evt (a client connection, or one peer of a
  server): it is one *source*, so its events run one at a time, in order. A received message
  runs its handlers right in the reader task when no handler of this channel is running and
  none of its receive handlers can wait for long (no task hop: the fast path); otherwise it is
  queued, and when `max_queue` messages wait, the reader stops reading (TCP backpressure),
  except while an `expect` on this channel waits (its handler may be the one the queue waits
  for: a start handler doing many round trips would otherwise wait for ever).
- `expect` sees a per-channel log of recent messages, kept only while some handler that uses
  `expect` is running.
- This module turns statements and events into transport calls; it never touches a socket
  (lang.wire does), and the transport never sees an evt value.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from lang import ast as A
from lang import config
from lang.compile import Layout, Scope
from lang.endpoints.expecting import Expecting, clock
from lang.endpoints.payloads import convert, encode, payload_size
from lang.errors import EvtRuntimeError
from lang.runtime.host import EndpointHost
from lang.values import escape_remote, to_str
from lang.wire.frames import Closed, Limits

# encode, convert and payload_size (lang.endpoints.payloads) are imported from here too

if TYPE_CHECKING:
    from lang.compile import Compiler
    from lang.wire.connection import WebSocket

EXPECT_LOG = 4096  # messages an `expect` can look back on, per channel


def closed_value(c: Closed) -> dict[str, Any]:
    return {"code": c.code, "reason": c.reason, "clean": c.clean}


def limits_of(cfg: dict[str, Any]) -> Limits:
    return Limits(max_message=int(cfg["max_message"]), ping_interval=float(cfg["ping_interval"]),
                  ping_timeout=float(cfg["ping_timeout"]),
                  close_timeout=float(cfg["close_timeout"]))


class Endpoint:
    """What a `connection` or `server` declaration names."""

    role = ""
    evt_type = ""
    _loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, rt: EndpointHost, decl: A.Connection | A.Server) -> None:
        self.rt = rt
        self.name = decl.name
        self.decl = decl
        self.span = decl.span
        self.config: dict[str, Any] = config.defaults(self.role)
        self._items: list[tuple[str, Any, A.Span]] = []
        self.inline_ok = False  # set by the runtime from the handlers
        # set by the runtime: kinds of event ("start", "receive") of which a handler may
        # `expect`; such an event keeps the message log from the moment it happens
        self.expecting: frozenset[str] = frozenset()
        self.receive_key = ("ws", "receive", self.name)
        # its built-in metrics (SPEC §12: tagged with its name), None with --no-metrics
        self.tally = rt.metrics.tally(self.name) if rt.metrics is not None else None

    def __repr__(self) -> str:
        return f"<{self.evt_type} {self.name}>"

    def loop(self) -> asyncio.AbstractEventLoop:
        """The program's event loop (anyio's asyncio backend: evt runs on no other), found
        once: asking for it costs a system call each time (CPython checks the pid)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def __str__(self) -> str:
        return repr(self)

    @property
    def label(self) -> str:
        return self.name

    def compile_config(self, compiler: Compiler) -> None:
        self._items = [(item.key, compiler.expr_in(item.value, Scope(Layout(), None, "init",
                                                                      self.name)),
                        item.value.span) for item in self.decl.items]

    async def evaluate_config(self, into: dict[str, Any] | None = None) -> None:
        """Evaluate the configuration (at each `start`, or for an `open`: into its own
        dict) and judge it."""
        from lang.runtime.core import Inv

        fr: list[Any] = [None] * 64
        fr[0] = Inv(self.rt, f"the configuration of {self.name}", self.span)
        for key, (fn, is_async), span in self._items:
            value = (await fn(fr)) if is_async else fn(fr)
            problem = config.problem(self.role, key, value)
            if problem:
                raise EvtRuntimeError(f"{self.role} {self.name}: {problem}", span)
            (self.config if into is None else into)[key] = config.value_for(self.role, key, value)

    def report_error(self, message: str, peer: Any) -> None:
        """An `on websocket error` event; unhandled, it goes to stderr and fails the run."""
        rt = self.rt
        key = ("ws", "error", self.name)
        if rt.shutting_down:
            return
        if self.tally is not None:
            self.tally.errors += 1
        if rt.has_handlers(key):
            source = peer.source if isinstance(peer, Channel) else self.source_for_errors()
            source.post(lambda: rt.dispatch(key, message, peer if peer is not None else None))
        else:
            rt.unhandled_ws_error(f"{self.span}: websocket error: {message}")

    async def report_error_here(self, message: str, peer: Any) -> None:
        """An `on websocket error` event run in place, by a handler of the same source (a
        receive handler's message that is not JSON): it comes before the next message's."""
        rt = self.rt
        key = ("ws", "error", self.name)
        if rt.shutting_down:
            return
        if self.tally is not None:
            self.tally.errors += 1
        if rt.has_handlers(key):
            await rt.dispatch(key, message, peer)
        else:
            rt.unhandled_ws_error(f"{self.span}: websocket error: {message}")

    def source_for_errors(self) -> Any:
        return self.rt.lifecycle

    def verbose(self, text: str) -> None:
        if self.rt.verbose:
            self.rt.log(f"{self.name}: {text}")

    def tracer(self, who: str) -> Callable[[str, str, Any], None] | None:
        if not self.rt.trace:
            return None
        rt = self.rt

        def trace(direction: str, kind: str, payload: Any) -> None:
            if type(payload) is bytes:
                shown = escape_remote(to_str(payload))
            elif kind == "close":
                shown = escape_remote(str(payload))
            else:
                shown = escape_remote(json.dumps(payload, ensure_ascii=False))
            rt.log(f"{who} {direction} {kind} {shown}")
        return trace

    async def shutdown(self) -> None:
        """Program end: close with 1001 (going away) and a close handshake."""


def _payload(value: Any, mode: str | None, span: A.Span) -> str | bytes:
    """What `send` puts in a frame: a string or bytes as it is, anything else encoded."""
    t = type(value)
    if mode is None and (t is str or t is bytes):
        return value
    try:
        return encode(value, mode)
    except EvtRuntimeError as e:
        e.span = span
        raise


class Channel(Expecting):
    """One live WebSocket as a source of evt events (a client connection, or a peer)."""

    __slots__ = ("_alarm", "_arrived", "_space", "endpoint", "inline", "log", "max_queue",
                 "opened_at", "pending", "recording", "rt", "source", "tally", "ws")
    # SPEC §14: `--record` writes each message from the client's side: what a client
    # connection sends is "send", what a server's peer sends it is "receive"
    is_client_side = True

    def __init__(self, endpoint: Endpoint) -> None:
        from lang.runtime.sources import Source

        self.endpoint = endpoint
        self.rt = endpoint.rt
        self.ws: WebSocket | None = None
        self.inline = False  # a handler runs inside the reader now
        self.source = Source(self.rt)
        self.pending = 0  # queued receive jobs
        self._space: anyio.Event | None = None
        self.log: deque[tuple[int, Any]] | None = None  # made while a handler may `expect`
        self._arrived: list[asyncio.Future[None]] | None = None  # the `expect`s waiting
        self._alarm: Any = None  # lang.runtime.alarms.Alarm: wakes them at a deadline
        self.max_queue = int(endpoint.config["max_queue"])
        self.tally = endpoint.tally
        self.opened_at = 0.0
        self.recording: Any = None  # `--record`: this session's conversation, while it is open

    def handshake_record(self) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
        """For `--record`: (the URL, the request's headers, the response's headers)."""
        raise NotImplementedError

    def session_began(self) -> None:
        """The handshake is done (ws_sessions, and the clock of ws_session_duration)."""
        recorder = self.rt.recorder
        if recorder is not None:
            url, request, response = self.handshake_record()
            self.recording = recorder.opened(url, request, response, self.is_client_side)
        tally = self.tally
        if tally is not None:
            tally.sessions += 1
            tally.open += 1
            self.opened_at = clock()
        ws = self.ws
        if ws is not None and self._sink_ok():
            ws.sink = self

    def session_ended(self) -> None:
        if self.ws is not None:
            self.ws.sink = None
        recording = self.recording
        if recording is not None:
            self.recording = None
            ws = self.ws
            closed = ws.closed if ws is not None else None
            recording.ended(closed.code if closed is not None else None,
                            closed.reason if closed is not None else "",
                            bool(ws is not None and ws.closed_by_peer))
        tally = self.tally
        if tally is not None:
            tally.open -= 1
            tally.session_duration.add(clock() - self.opened_at)

    @property
    def peer_value(self) -> Any:
        """What `from P` binds."""
        return self

    # ------------------------------------------------------------ receiving

    async def on_message(self, msg: str | bytes) -> None:
        """Called by the transport's reader for each whole message."""
        rt = self.rt
        recording = self.recording
        if recording is not None:
            recording.message(not self.is_client_side, msg)
        self._arrive(msg)
        key = self.endpoint.receive_key
        handlers = rt.handlers.get(key)
        if handlers is None and not rt.has_handlers(key):
            return  # nothing to run (as for post_event): an `expect` may take it from the log
        source = self.source
        if self.endpoint.inline_ok and not source.busy and not rt.shutting_down:
            self.inline = True  # replies are batched: the reader writes them after this read
            try:  # the fast path: no queue, no task hop
                if handlers is not None and len(handlers) == 1 and handlers[0].mode is None \
                        and rt.current is None and not rt.exiting:
                    await rt.run_handler(handlers[0], msg, self.peer_value)  # dispatch's case
                else:
                    await self.dispatch_receive(msg)
            finally:
                self.inline = False
            return
        if self.pending >= self.max_queue:
            await self._wait_for_space(msg)
        self.pending += 1
        if "receive" in self.endpoint.expecting and not rt.shutting_down:
            since = self.expect_from_now()
            source.post(lambda: self._queued(msg, since))
        else:
            source.post(lambda: self._queued(msg))

    def _arrive(self, msg: str | bytes) -> None:
        """What every message does first: its number, the metrics, and the log an `expect`
        looks at (waking those that wait)."""
        rt = self.rt
        rt.message_seq += 1
        tally = self.tally
        if tally is not None:
            tally.msgs_received += 1
            tally.data_received += len(msg) if type(msg) is bytes or msg.isascii() \
                else payload_size(msg)  # type: ignore[union-attr]
        if rt.expect_active:
            log = self.log
            if log is None:
                log = self.log = deque(maxlen=EXPECT_LOG)
            log.append((rt.message_seq, msg))
            waiting = self._arrived
            if waiting is not None:  # (wake_expect, inline)
                self._arrived = None
                for waiter in waiting:
                    if not waiter.done():
                        waiter.set_result(None)
        elif self.log is not None:
            self.log = None

    # The transport's MessageSink (lang.wire.connection): a message with no receive handler
    # to run (a load generator's reply, which an `expect` takes from the log) is taken from
    # the read itself, without a trip through the reader's task.

    # So is a message whose one handler is a `send` back to its sender (Handler.reply: an
    # echo, a mock's answer) when on_message would run it inline: the reply is queued in the
    # connection's outbox, which the transport writes when it has taken the read.

    def ready_now(self) -> bool:
        if self.recording is not None:
            return False
        rt = self.rt
        key = self.endpoint.receive_key
        handlers = rt.handlers.get(key)
        if handlers is None:
            return not rt.has_handlers(key)
        return len(handlers) == 1 and handlers[0].reply is not None and rt.current is None \
            and self.endpoint.inline_ok and not self.source.busy and not rt.shutting_down \
            and not rt.exiting and not rt.expect_active

    def take_now(self, msg: str | bytes) -> None:
        """All that on_message does when ready_now holds."""
        self._arrive(msg)
        rt = self.rt
        handlers = rt.handlers.get(self.endpoint.receive_key)
        if handlers is not None:
            rt.run_reply(handlers[0], msg, self.peer_value)

    def _sink_ok(self) -> bool:
        """Whether to offer the transport the sink: not to a declaration whose receive
        handlers are in the project's scope (its reads would only ask to be told no), unless
        that is one reply. Whether one may run now (a scene's, a REPL's) is asked each read."""
        handlers = self.rt.handlers.get(self.endpoint.receive_key)
        return handlers is None or (len(handlers) == 1 and handlers[0].reply is not None)

    async def _wait_for_space(self, msg: str | bytes) -> None:
        """Stop reading until handlers catch up (TCP backpressure). Once we have sent a
        close frame, reading goes on, so that the peer's close frame is read: what the peer
        sent before it saw ours is queued without a pause, up to max(1 MiB, max_message)
        bytes (beyond that, close_timeout ends the wait)."""
        rt = self.rt
        ws = self.ws
        while self.pending >= self.max_queue and not rt.shutting_down:
            if self._arrived is not None:
                return  # an `expect` waits for a message: reading must go on
            if ws is not None and ws.closed is None and not ws.open:
                ws.late_bytes += len(msg)
                if ws.late_bytes <= ws.out_limit:
                    return
            space = self._space = anyio.Event()
            if ws is not None:
                ws.unpause = space.set
                ws.pauses += 1
            try:
                await space.wait()
            finally:
                if ws is not None:
                    ws.unpause = None

    def expect_from_now(self) -> int:
        """For an event whose handler may `expect` and will run later (it is queued): the
        log is kept from now, and the handler sees what arrives from now (the message seq to
        start after). The handler's end gives the log back (`rt.expect_active`)."""
        self.rt.expect_active += 1
        return self.rt.message_seq

    async def _queued(self, msg: str | bytes, since: int | None = None) -> None:
        try:
            await self.dispatch_receive(msg, since)
        finally:
            if since is not None:
                self.rt.expect_active -= 1
            self.pending -= 1
            if self._space is not None:
                self._space.set()
                self._space = None

    async def dispatch_receive(self, msg: str | bytes, since: int | None = None) -> None:
        """Run the receive handlers, project scope first. Once `exit` ran (or the shutdown
        began) no more of them start, as in Runtime.dispatch."""
        rt = self.rt
        if rt.exiting or rt.shutting_down:
            return
        ep = self.endpoint
        key = ep.receive_key
        peer = self.peer_value
        handlers = rt.handlers.get(key, ())
        act = rt.current
        if act is not None:
            scene_handlers = act.info.handlers.get(key)
            if scene_handlers:
                handlers = [*handlers, *scene_handlers]
        elif len(handlers) == 1 and handlers[0].mode is None:  # the common case, shortest
            await rt.run_handler(handlers[0], msg, peer, since=since)
            return
        for h in handlers:
            if rt.exiting or rt.shutting_down:
                return  # a handler before this one ran `exit`
            mode = h.mode
            if mode is None:
                value = msg
            else:
                try:
                    value = convert(msg, mode)
                except ValueError as e:
                    await ep.report_error_here(f"{self.label}: {e}", peer)
                    continue
            if h.scene is not None and (rt.current is None or h.scene is not rt.current.info):
                continue  # a handler of a scene that stopped being current meanwhile
            await rt.run_handler(h, value, peer, since=since)

    def post_event(self, kind: str, value: Any) -> None:
        if self.rt.until_event is not None:
            self.rt.event_passed()  # opened or closed: `wait until connected(...)` looks
        ep = self.endpoint
        key = ("ws", kind, ep.name)
        if not self.rt.has_handlers(key):
            return  # nothing to run: the source stays free for the fast path
        peer = self.peer_value
        rt = self.rt
        if kind in ep.expecting and not rt.shutting_down:
            # its handlers see the messages that arrive before they begin (a greeting the
            # peer sends at once is not missed by `expect` in `on websocket start`)
            since = self.expect_from_now()

            async def job() -> None:
                try:
                    await rt.dispatch(key, value, peer, since=since)
                finally:
                    rt.expect_active -= 1
            self.source.post(job)
        else:
            self.source.post(lambda: rt.dispatch(key, value, peer))

    # ------------------------------------------------------------ statements

    @property
    def label(self) -> str:
        return self.endpoint.name

    def evt_connected(self) -> bool:
        return self.ws is not None and self.ws.open

    def evt_subprotocol(self) -> Any:
        return self.ws.peer.subprotocol if self.ws is not None and self.ws.open else None

    async def evt_send(self, value: Any, mode: str | None, inv: Any, span: A.Span) -> None:
        data = _payload(value, mode, span)
        rt = self.rt
        marks = inv.marks
        if marks is not None or rt.expect_active:
            if marks is None:
                marks = inv.marks = {}
                inv.sent_at = {}
            marks[self] = rt.message_seq
            inv.sent_at[self] = clock()
        ws = self.ws
        if ws is None or ws.closed is not None:
            self.endpoint.report_error(f"{self.label}: not connected", self.peer_value)
            return
        try:
            frame = ws.send_nowait(data, self.inline)  # (no coroutine when it need not wait)
            if frame is not None:
                await ws.send_frame(frame)
        except ConnectionError as e:
            self.endpoint.report_error(f"{self.label}: {e}", self.peer_value)
            return
        self._sent(data)

    def evt_send_now(self, value: Any, mode: str | None, inv: Any, span: A.Span) -> None:
        """evt_send without waiting, for a reply from the read's callback (take_now): the
        frame is written, or queued in the connection's outbox whatever its size (the
        transport writes it when it has taken the read). Raises as evt_send does."""
        data = _payload(value, mode, span)
        ws = self.ws
        if ws is None or ws.closed is not None:
            self.endpoint.report_error(f"{self.label}: not connected", self.peer_value)
            return
        try:
            ws.send_queued(data)
        except ConnectionError as e:
            self.endpoint.report_error(f"{self.label}: {e}", self.peer_value)
            return
        self._sent(data)

    def _sent(self, data: str | bytes) -> None:
        recording = self.recording
        if recording is not None:
            recording.message(self.is_client_side, data)
        tally = self.tally
        if tally is not None:
            tally.msgs_sent += 1
            tally.data_sent += len(data) if type(data) is bytes or data.isascii() \
                else payload_size(data)  # type: ignore[union-attr]

    async def evt_ping(self) -> float | None:
        ws = self.ws
        if ws is None or ws.closed is not None:
            return None
        seconds = await ws.round_trip()
        if seconds is not None and self.tally is not None:
            self.tally.ping.add(seconds)  # ws_ping (SPEC §12) counts the script's pings too
        return seconds

    async def evt_close(self, code: int, reason: str, span: A.Span) -> None:
        ws = self.ws
        if ws is not None and ws.closed is None:
            if self.recording is not None:
                self.recording.closing(code, reason)
            await ws.close(code, reason)
