"""The running program: variables, handlers, sources, timers, scenes and lifetime.

Rules of this module (SPEC §7, §8):
- Events of one source are handled one at a time, in order; different sources run
  concurrently. A source is one client connection, one peer, one timer, standard input, one
  watched variable, or the project lifecycle. Handlers of one event run one after the other:
  project scope first, then the current scene's, each in source order.
- A runtime error aborts one handler invocation: it is printed and the program goes on; the
  exit code is then 1.
- The program ends when `exit` runs, on a signal, or when nothing can fire any more: `alive`
  counts what could (open or connecting endpoints, pending timers, queued or running handlers,
  an open stdin with `on input` handlers) and the program ends when it reaches zero.
- Shutdown: every task is cancelled, the current scene's `on scene stop` runs, then
  `on project stop`, then every connection is closed with 1001 and a close handshake.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel

from lang import ast as A
from lang.compile import (
    Compiler,
)
from lang.errors import EvtRuntimeError, Frame
from lang.interpreter.actions import Actions
from lang.interpreter.cluster import ClusterLink
from lang.interpreter.declarations import Declarations
from lang.interpreter.events import (
    Activation,
    Handler,
    SceneInfo,
    run_reply,
)
from lang.interpreter.stdin import StandardInput
from lang.interpreter.testing import TestMode
from lang.metrics.registry import Registry
from lang.runtime import stdio as io_
from lang.runtime.alarms import Alarms
from lang.runtime.core import (
    AssertFailed,
    ExitRequest,
    FuncCell,
    Inv,
    RejectRequest,
    SkipRequest,
    raise_recursion_limit,
    shutdown_signals,
    signal_exit_code,
)
from lang.runtime.sources import Source
from lang.runtime.timers import TimerHandle, TimerSpec
from lang.values import equals, os_text, to_repr
from lang.wire.keepalive import KeepAlive


class Runtime(Declarations, Actions, StandardInput, TestMode):
    """One running evt program (a script, or a REPL session)."""

    def __init__(self, *, builtins: dict[str, Any], args: list[str] | None = None,
                 out: TextIO | None = None, err: TextIO | None = None, verbose: bool = False,
                 trace: bool = False, repl: bool = False, stdio: io_.Stdio | None = None,
                 metrics: bool = True) -> None:
        raise_recursion_limit()
        self.builtins = builtins
        self.out = out
        self.err = err
        self.stdio = stdio  # the CLI's: buffered standard output and error (lang.runtime.stdio)
        self._drain_scope: anyio.CancelScope | None = None
        self.verbose = verbose
        self.trace = trace
        self.fail_fast = False  # `evt run --fail-fast`: the first error ends the program
        self.repl = repl
        self.globals: list[Any] = []
        self.global_slots: dict[str, int] = {}
        self.watched: list[bool] = []
        self.funcs: dict[str, FuncCell] = {}
        self.scenes: dict[str, SceneInfo] = {}
        self.handlers: dict[tuple, list[Handler]] = {}
        self.endpoints: dict[str, Any] = {}
        self.current: Activation | None = None
        self.timers: set[TimerHandle] = set()
        self.top_timers: list[TimerSpec] = []
        self.lifecycle = Source(self)
        self.change_sources: dict[tuple, Source] = {}
        self.wants_input = False
        self.message_seq = 0
        self.expect_active = 0  # running invocations that may `expect`: channels keep a log
        self.until_event: anyio.Event | None = None  # set at the next event: `wait until`
        self.fn_decls: dict[Any, A.Func] = {}
        self.blocking_funcs: set[Any] = set()
        self.expect_funcs: set[Any] = set()
        self.alive = 0
        self.failed = False
        self.exit_code: int | None = None
        self.signal_code: int | None = None
        self.shutting_down = False
        self.stopping = False
        self.exiting = False
        self.done = anyio.Event()
        self.tg: anyio.abc.TaskGroup | None = None
        self._keepalive: Any = None
        self._alarms: Any = None
        self.metrics = Registry() if metrics else None  # SPEC §12 (None: --no-metrics)
        self.thresholds: list[A.Threshold] = []
        self.measuring: Any = None  # lang.interpreter.measuring.Measuring, set by the CLI
        self.recorder: Any = None  # `--record` (SPEC §14): lang.recording.recorder, by the CLI
        self.cluster = ClusterLink(self)  # SPEC §16 (joins a cluster when one is declared)
        self.breached = False  # a threshold was breached
        self.compiler = Compiler(self, builtins)
        self.declare_global("args", [os_text(a) for a in args or []])

    # ------------------------------------------------------------ output

    def write(self, text: str) -> None:
        if self.stdio is not None:
            self.stdio.write(text + "\n")  # never blocks (lang.runtime.stdio)
            return
        out = self.out or sys.stdout
        try:
            out.write(text + "\n")
            out.flush()
        except BrokenPipeError:
            self._output_closed()

    def echo(self, value: Any) -> None:
        """The REPL shows the value of a bare expression in literal form (null is not shown)."""
        if value is not None:
            self.write(to_repr(value))

    def diag(self, text: str) -> None:
        if self.stdio is not None:
            self.stdio.diag(text if text.endswith("\n") else text + "\n")
            return
        err = self.err or sys.stderr
        try:
            err.write(text if text.endswith("\n") else text + "\n")
            err.flush()
        except (BrokenPipeError, ValueError):
            pass

    def log(self, text: str) -> None:
        """A lifecycle line for -v (and `listening on` lines, which always show)."""
        self.diag(text)

    def _output_closed(self) -> None:
        # stdout went away (`evt run x | head`): stop writing and end quietly
        if self.stdio is None:
            self.out = open(__import__("os").devnull, "w")
        self.request_exit(None)

    # ------------------------------------------------------------ declarations

    # ------------------------------------------------------------ liveness and tasks

    def hold(self) -> None:
        self.alive += 1

    def release(self) -> None:
        self.alive -= 1
        if self.alive <= 0 and not self.repl:
            self.done.set()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        assert self.tg is not None
        self.tg.start_soon(fn, *args)

    def keep_alive(self, ws: Any) -> None:
        """Keep-alive pings for a connection: one scheduler task for all of them."""
        if self._keepalive is None:
            self._keepalive = KeepAlive(self.spawn)
            self.spawn(self._keepalive.run)
        self._keepalive.add(ws)

    def alarm(self, deadline: float, fire: Callable[[], Any]) -> Any:
        """Call `fire()` once `deadline` has passed (an `expect`'s `within`): one task for all
        of them; the handle's cancel() withdraws it."""
        if self._alarms is None:
            self._alarms = Alarms()
            self.spawn(self._alarms.run)
        return self._alarms.at(deadline, fire)

    def request_exit(self, code: int | None) -> None:
        """`exit`, a failed assert, or the REPL's end: nothing more runs but the shutdown."""
        if self.exit_code is None:
            self.exit_code = code if code is not None else -1
        self.exiting = True
        self.done.set()

    def _stop_if_exiting(self) -> None:
        """After an inline dispatch (emit, change scene): if a handler called `exit`, the
        handler that dispatched stops too."""
        if self.exiting and not self.shutting_down:
            raise ExitRequest(None)

    def final_code(self) -> int:
        if self.signal_code is not None:
            return self.signal_code
        if self.exit_code is not None and self.exit_code >= 0:
            return self.exit_code or (1 if self.breached else 0)
        return 1 if self.failed or self.breached else 0

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    # ------------------------------------------------------------ running handlers

    async def run_body(self, body: Any, fr: list, what: str, span: A.Span) -> None:
        """Run a compiled body; report what goes wrong, never raise (but cancellation)."""
        fn, is_async = body
        try:
            if is_async:
                await fn(fr)
            else:
                fn(fr)
        except Exception as e:
            self.failure(e, what, span)
        if self.until_event is not None:
            self.event_passed()
        if io_.owes():  # it printed into a full buffer: it waits for room, nothing else
            await io_.settle()

    def failure(self, e: Exception, what: str, span: A.Span) -> None:
        """What ended a handler (or timer block, or REPL input) early."""
        if isinstance(e, EvtRuntimeError):
            self.report(e, what, span)
        elif isinstance(e, ExitRequest):
            self.request_exit(e.code)
        elif isinstance(e, AssertFailed):
            self.assertion(e)
        elif isinstance(e, SkipRequest):
            self.skip_requested(e, what, span)
        elif isinstance(e, RejectRequest):  # reached from elsewhere than a request handler
            self.report(EvtRuntimeError("'reject' works only in an 'on websocket request' "
                                        "handler", e.span), what, span)
        elif isinstance(e, RecursionError):
            self.report(EvtRuntimeError("too much recursion (the interpreter's stack is full)",
                                        span), what, span)
        else:  # a bug of ours: show it, and keep the program going
            self.internal_error(what, e)

    async def run_handler(self, h: Handler, value: Any, peer: Any, depth: int = 0,
                          activation: Activation | None = None, since: int | None = None
                          ) -> None:
        """`since`: for an event that was queued, the message seq when it happened; its
        `expect` sees the messages after it (not only those after the handler began)."""
        if io_.owes():
            # this task printed into a full output buffer: it waits for room before it
            # handles more (a connection's reader has sent the replies of the last read)
            await io_.settle()
        fr: list[Any] = [None] * h.size
        inv = fr[0] = Inv(self, h.what, h.span, depth)
        if since is not None:
            inv.start_seq = since
        if h.scene is not None:
            act = activation if activation is not None else self.current
            fr[1] = act.vars if act is not None else []
        if h.as_slot is not None:
            fr[h.as_slot] = value
        if h.from_slot is not None:
            fr[h.from_slot] = peer
        uses_expect = h.uses_expect
        if uses_expect:
            self.expect_active += 1
        try:
            if h.is_async:
                await h.body(fr)
            else:
                h.body(fr)
        except Exception as e:
            # SPEC §15: a request handler's `reject` (or its failure: 500) is its request's
            if not (h.key[:2] == ("ws", "request") and value.ended_by(e)):
                self.failure(e, h.what, h.span)
        finally:
            if uses_expect:
                self.expect_active -= 1
        if self.until_event is not None:
            self.event_passed()

    # a handler that is one `send` back to the sender, from the read's callback (the
    # transport's MessageSink: lang.endpoints.channel take_now)
    run_reply = run_reply

    async def dispatch(self, key: tuple, value: Any = None, peer: Any = None, depth: int = 0,
                       since: int | None = None) -> None:
        """Run every handler of an event, project scope first, then the current scene's.
        Once `exit` ran, only the shutdown's own handlers run. `since`: see run_handler."""
        for h in self.handlers.get(key, ()):
            if self.shutting_down:
                if key[0] != "project stop":
                    return
            elif self.exiting:
                return
            await self.run_handler(h, value, peer, depth, since=since)
        act = self.current
        if act is not None:
            for h in act.info.handlers.get(key, ()):
                if self.current is not act or self.shutting_down or self.exiting:
                    return
                await self.run_handler(h, value, peer, depth, act, since=since)

    def has_handlers(self, key: tuple) -> bool:
        if key in self.handlers:
            return True
        act = self.current
        return act is not None and key in act.info.handlers

    def report(self, e: EvtRuntimeError, what: str, span: A.Span) -> None:
        self.failed = True
        if e.span is A.NOSPAN:
            e.span = span  # no finer position is known: the handler's
        e.frames.append(Frame(what, span))
        self.note_failure(e.format())
        self.diag(e.format())
        if self.fail_fast:
            self.request_exit(1)

    def unhandled_ws_error(self, text: str) -> None:
        """A websocket error that no `on websocket error` handler takes."""
        self.failed = True
        self.note_failure(text)
        self.diag(text)
        if self.fail_fast:
            self.request_exit(1)

    def assertion(self, e: AssertFailed) -> None:
        self.failed = True
        from lang.errors import quote_source
        message = f": {e.message}" if e.message else ""
        text = f"{e.span}: assertion failed{message}\n{quote_source(e.span)}"
        self.note_failure(text)
        self.diag(text)
        self.request_exit(1)

    def internal_error(self, what: str, e: BaseException | None = None) -> None:
        self.failed = True
        trace = "".join(traceback.format_exception(e)) if e is not None \
            else traceback.format_exc()
        text = f"evt: internal error in {what} (a bug in evt, please report it):\n{trace}"
        self.note_failure(text)
        self.diag(text)

    # ------------------------------------------------------------ variables

    def global_changed(self, index: int, old: Any, new: Any) -> None:
        if equals(old, new):
            return
        name = next(n for n, i in self.global_slots.items() if i == index)
        self._post_change(("change", None, name), new)

    def scene_var_changed(self, info: SceneInfo, index: int, old: Any, new: Any) -> None:
        if equals(old, new):
            return
        name = next(n for n, i in info.var_slots.items() if i == index)
        self._post_change(("change", info.name, name), new)

    def _post_change(self, key: tuple, value: Any) -> None:
        source = self.change_sources.get(key)
        if source is None:
            source = self.change_sources[key] = Source(self)
        source.post(lambda: self.dispatch(key, value))

    # ------------------------------------------------------------ the program's life

    async def initialise(self, inits: list[tuple[int, Any]]) -> bool:
        """Project variables, in order. False when one of them failed. (A connection's or a
        server's configuration is evaluated when it is started.)"""
        fr: list[Any] = [None] * 64
        fr[0] = Inv(self, "project initialisation", A.NOSPAN)
        for slot, (fn, is_async) in inits:
            try:
                self.globals[slot] = (await fn(fr)) if is_async else fn(fr)
            except Exception as e:  # a runtime error, or an `exit` or assert in a function
                name = next(n for n, i in self.global_slots.items() if i == slot)
                self.failure(e, f"the initial value of '{name}'", getattr(e, "span", A.NOSPAN))
                return False
        return True

    def start_activity(self) -> None:
        """Top-level timers, standard input, then `on project start`."""
        for spec in self.top_timers:
            self._start_timer_spec(spec, None)
        if self.wants_input and not self.repl:
            self._start_input()
        self.lifecycle.post(lambda: self.dispatch(("project start",)))
        self.start_test()

    async def main(self, inits: list[tuple[int, Any]], handle_signals: bool = True,
                   session: Callable[[], Awaitable[None]] | None = None) -> int:
        """Run the program to its end; return the exit code. A REPL passes its `session`,
        which runs beside the program and ends it when the user leaves."""
        if self.stdio is not None:
            self.stdio.attach(self._output_closed)
        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(self._watch_signals)
            if self.recorder is not None:
                outer.start_soon(self.recorder.run)
            if self.metrics is not None:
                self.metrics.started = self.metrics.clock()
            if self.measuring is not None:
                problem = await self.measuring.start(outer)
                if problem is not None:
                    self.diag(f"evt: error: {problem}")
                    self.measuring = None
                    self.request_exit(2)
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self.hold()  # held until start-up is over, so the program cannot end early
                try:
                    if not await self.initialise(inits) or not await self.cluster.start(outer):
                        self.request_exit(1)
                    else:
                        self.start_activity()
                        if session is not None:
                            tg.start_soon(session)
                finally:
                    self.release()
                await self.done.wait()
                self.stopping = True  # what is cancelled now is ended by the shutdown
                tg.cancel_scope.cancel()
            await self.shutdown()
            await self.cluster.finish()
            if self.recorder is not None:
                self.recorder.finish()
            if self.measuring is not None:
                self.breached = self.measuring.finish()
            await self._flush_output()
            outer.cancel_scope.cancel()
        return self.final_code()

    async def _flush_output(self) -> None:
        """Give what is buffered for standard output and error time to be written: all it
        needs after a normal end, DRAIN_AFTER_SIGNAL after a signal (a signal that comes
        while it drains cuts it to that, a second one ends it); then drop the rest."""
        stdio = self.stdio
        if stdio is None:
            return
        with anyio.CancelScope() as scope:
            self._drain_scope = scope
            if self.signal_code is not None:
                scope.deadline = anyio.current_time() + io_.DRAIN_AFTER_SIGNAL
            await stdio.drain()
        self._drain_scope = None
        stdio.close()

    async def shutdown(self) -> None:
        """After all activity is cancelled: scene stop, project stop, close everything."""
        self.shutting_down = True
        if self.stdio is not None:
            self.stdio.hold_back = False  # the shutdown must get through: nothing waits
        for t in list(self.timers):
            t.evt_cancel()
        with anyio.CancelScope() as scope:
            self._shutdown_scope = scope
            async with anyio.create_task_group() as tg:
                self.tg = tg
                act = self.current
                if act is not None:
                    await self._scene_event(act, "scene stop", 0)
                await self.dispatch(("project stop",))
                self.current = None
                for ep in list(self.endpoints.values()):
                    tg.start_soon(ep.shutdown)

    async def _watch_signals(self) -> None:
        try:
            receiver = anyio.open_signal_receiver(*shutdown_signals())
        except (NotImplementedError, RuntimeError, ValueError):
            return
        with receiver as signals:
            async for signum in signals:
                code = signal_exit_code(signum)
                drain = self._drain_scope
                if self.signal_code is None:
                    self.signal_code = code
                    if self.verbose:
                        self.log(f"evt: {signal.Signals(signum).name}: shutting down")
                    self.done.set()
                    if drain is not None:  # output still draining after a normal end
                        drain.deadline = min(drain.deadline,
                                             anyio.current_time() + io_.DRAIN_AFTER_SIGNAL)
                else:  # a second signal: stop waiting for anything
                    scope = getattr(self, "_shutdown_scope", None)
                    if scope is not None:
                        scope.cancel()
                    if drain is not None:
                        drain.cancel()
