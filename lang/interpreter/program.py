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
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel

from lang import ast as A
from lang.check.checker import valid_close_code
from lang.compile import (
    BLOCKING_STMTS,
    Compiler,
    Layout,
    Scope,
    body_has,
    functions_with,
    waiting_functions,
)
from lang.errors import EvtRuntimeError, Frame
from lang.runtime import stdio as io_
from lang.runtime.core import (
    MAX_DEPTH,
    AssertFailed,
    ExitRequest,
    FuncCell,
    Inv,
    checkpoint,
    raise_recursion_limit,
    shutdown_signals,
    signal_exit_code,
)
from lang.values import equals, escape_remote, os_text, to_repr, to_str, type_name

_WS_KINDS = {"websocket start": "start", "websocket stop": "stop", "websocket error": "error",
             "websocket receive": "receive"}


class Handler:
    """A compiled `on ...` declaration."""

    __slots__ = ("as_slot", "blocks", "body", "event", "from_slot", "is_async", "key", "mode",
                 "scene", "size", "span", "uses_expect", "what")

    def __init__(self, event: A.Event, key: tuple, scene: SceneInfo | None, span: A.Span
                 ) -> None:
        self.event = event
        self.key = key
        self.scene = scene
        self.span = span
        self.mode = event.mode
        self.what = describe_event(event)
        self.body: Any = None
        self.is_async = True
        self.size = 3
        self.as_slot: int | None = None
        self.from_slot: int | None = None
        self.blocks = True  # may wait for long: never run inside a connection's reader
        self.uses_expect = True


def describe_event(ev: A.Event) -> str:
    parts = ["on", ev.kind]
    if ev.name is not None:
        parts.append(ev.name)
    if ev.mode is not None:
        parts.append(ev.mode)
    return " ".join(parts)


def event_key(ev: A.Event, scene: SceneInfo | None, rt: Runtime) -> tuple:
    kind = ev.kind
    if kind in _WS_KINDS:
        return ("ws", _WS_KINDS[kind], ev.name)
    if kind == "event":
        return ("event", ev.name)
    if kind == "change":
        if scene is not None and ev.name in scene.var_slots:
            return ("change", scene.name, ev.name)
        return ("change", None, ev.name)
    return (kind,)


class Installed:
    """What one install added: initialisers to run, new handlers and timers, and notes for
    the REPL (what an input replaced)."""

    def __init__(self) -> None:
        self.inits: list[tuple[int, Any]] = []
        self.handlers: list[Handler] = []
        self.timers: list[TimerSpec] = []
        self.notes: list[str] = []


class SceneInfo:
    """A compiled scene: its variables' slots and initialisers, functions, handlers, timers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.var_slots: dict[str, int] = {}
        self.var_inits: list[tuple[int, Any, int]] = []  # (slot, compiled, frame size)
        self.watched: list[bool] = []
        self.func_cells: dict[str, FuncCell] = {}
        self.handlers: dict[tuple, list[Handler]] = {}
        self.timers: list[TimerSpec] = []


class Activation:
    """A scene while it is current: its variables and running timers."""

    __slots__ = ("info", "timers", "vars")

    def __init__(self, info: SceneInfo) -> None:
        self.info = info
        self.vars: list[Any] = [None] * len(info.var_slots)
        self.timers: set[TimerHandle] = set()


class TimerSpec:
    """A top-level or scene-level `every`/`after`: a fresh frame for each run."""

    __slots__ = ("body", "interval", "kind", "size", "span", "uses_expect", "what")

    def __init__(self, kind: str, interval: Any, body: Any, size: int, span: A.Span,
                 uses_expect: bool = True) -> None:
        self.uses_expect = uses_expect
        self.kind = kind
        self.interval = interval
        self.body = body
        self.size = size
        self.span = span
        self.what = f"{kind} block"


class TimerHandle:
    """A running timer. `every` runs its block inline in its own task, so a tick that comes
    due while the previous run is still going is skipped, not piled up."""

    evt_type = "timer"
    __slots__ = ("activation", "body", "cancelled", "fresh", "kind", "rt", "running", "scope",
                 "seconds", "span", "uses_expect", "what")

    def __init__(self, rt: Runtime, kind: str, seconds: float, body: Any, span: A.Span,
                 what: str, activation: Activation | None, fresh: bool = False,
                 uses_expect: bool = True) -> None:
        self.rt = rt
        self.uses_expect = uses_expect
        self.kind = kind
        self.seconds = seconds
        self.body = body
        self.span = span
        self.what = what
        self.activation = activation
        self.fresh = fresh
        self.cancelled = False
        self.running = False
        self.scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<timer {self.kind} {to_str(self.seconds)}s>"

    def __str__(self) -> str:
        return repr(self)

    def begin(self, frame: list) -> None:
        rt = self.rt
        if rt.shutting_down:
            return
        (self.activation.timers if self.activation is not None else rt.timers).add(self)
        rt.hold()
        rt.spawn(self._run, frame)

    def evt_cancel(self) -> None:
        self.cancelled = True
        if not self.running and self.scope is not None:
            self.scope.cancel()

    async def _run(self, frame: list) -> None:
        rt = self.rt
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.cancelled:
                    return
                if self.kind == "after":
                    await anyio.sleep(self.seconds)
                    await self._once(frame)
                    return
                due = anyio.current_time() + self.seconds
                while not self.cancelled:
                    await anyio.sleep_until(due)
                    await self._once(frame)
                    now = anyio.current_time()
                    due += self.seconds
                    if due <= now:  # ticks that came due during the run are skipped
                        skipped = int((now - due) // self.seconds) + 1
                        due += skipped * self.seconds
        finally:
            (self.activation.timers if self.activation is not None else rt.timers).discard(self)
            rt.release()

    async def _once(self, frame: list) -> None:
        rt = self.rt
        if self.cancelled or rt.shutting_down or rt.exiting:
            return
        fr = list(frame) if self.fresh else frame
        fr[0] = Inv(rt, self.what, self.span)
        self.running = True
        if self.uses_expect:
            rt.expect_active += 1
        try:
            await rt.run_body(self.body, fr, self.what, self.span)
        finally:
            self.running = False
            if self.uses_expect:
                rt.expect_active -= 1


class Source:
    """Serial execution of one source's events: jobs run one at a time, in order."""

    __slots__ = ("busy", "queue", "rt")

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # made when needed: an idle connection should not hold an empty deque
        self.queue: deque[Callable[[], Awaitable[None]]] | None = None
        self.busy = False

    def post(self, job: Callable[[], Awaitable[None]]) -> None:
        rt = self.rt
        if rt.shutting_down or rt.stopping:
            # the program is ending: what is cancelled now must not start new work, or two
            # sources feeding each other (`on change a { b = b + 1 }` and the other way
            # round), each job a fresh task, would keep the cancelled task group from ending
            return
        if self.queue is None:
            self.queue = deque()
        self.queue.append(job)
        rt.hold()
        if not self.busy:
            self.busy = True
            rt.spawn(self._drain)

    async def _drain(self) -> None:
        rt = self.rt
        queue = self.queue
        assert queue is not None
        deadline = time.monotonic() + 0.02
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                finally:
                    rt.release()
                if io_.owes():  # the job printed into a full buffer: this source waits
                    await io_.settle()
                # a handler that queues work on its own source (`on change v { v = v + 1 }`)
                # must not keep everything else, Ctrl-C included, from running
                if queue and time.monotonic() >= deadline:
                    await anyio.lowlevel.checkpoint()
                    deadline = time.monotonic() + 0.02
        finally:
            self.busy = False
            if not queue:
                self.queue = None


class Runtime:
    """One running evt program (a script, or a REPL session)."""

    def __init__(self, *, builtins: dict[str, Any], args: list[str] | None = None,
                 out: TextIO | None = None, err: TextIO | None = None, verbose: bool = False,
                 trace: bool = False, repl: bool = False, stdio: io_.Stdio | None = None
                 ) -> None:
        raise_recursion_limit()
        self.builtins = builtins
        self.out = out
        self.err = err
        self.stdio = stdio  # the CLI's: buffered standard output and error (lang.stdio)
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
        self.compiler = Compiler(self, builtins)
        self.declare_global("args", [os_text(a) for a in args or []])

    # ------------------------------------------------------------ output

    def write(self, text: str) -> None:
        if self.stdio is not None:
            self.stdio.write(text + "\n")  # never blocks (lang.stdio)
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

    def declare_global(self, name: str, value: Any = None) -> int:
        index = self.global_slots.get(name)
        if index is None:
            index = len(self.globals)
            self.global_slots[name] = index
            self.globals.append(value)
            self.watched.append(False)
        else:
            self.globals[index] = value
        return index

    def endpoint(self, name: str) -> Any:
        return self.endpoints.get(name)

    def install(self, decls: list[A.Node], overrides: dict[str, Any] | None = None
                ) -> list[tuple[int, Any]]:
        """Compile declarations into this runtime. Returns the project variable initialisers
        to run, in order: (slot, compiled expression or a constant override)."""
        return self.install_decls(decls, overrides).inits

    def install_decls(self, decls: list[A.Node], overrides: dict[str, Any] | None = None
                      ) -> Installed:
        """Compile declarations into this runtime (all at once for a script; one input at a
        time in the REPL, where a declaration replaces an earlier one of the same name, or a
        handler of the same event, and says so)."""
        from lang.endpoints.channel import make_endpoint

        done = Installed()
        overrides = overrides or {}
        lets = [d for d in decls if isinstance(d, A.Let)]
        for d in lets:
            self.declare_global(d.name)
        for d in decls:
            if isinstance(d, A.Connection | A.Server):
                old = self.endpoints.get(d.name)
                if old is not None and old.role == ("connection" if isinstance(
                        d, A.Connection) else "server"):
                    old.decl = d
                    done.notes.append(f"{old.role} {d.name} redefined (used at its next start)")
                else:
                    self.endpoints[d.name] = make_endpoint(self, d)
        funcs: dict[Any, A.Func] = {}
        scene_decls = [d for d in decls if isinstance(d, A.Scene)]
        for d in decls:
            if isinstance(d, A.Func):
                funcs[d.name] = d
                if d.name in self.funcs:
                    done.notes.append(f"func {d.name} redefined")
        for s in scene_decls:
            if s.name in self.scenes and self.repl:
                done.notes.append(f"scene {s.name} redefined (used when it is next entered)")
            for item in s.items:
                if isinstance(item, A.Func):
                    funcs[(s.name, item.name)] = item
        self.fn_decls.update(funcs)
        every = self.fn_decls
        waiting = waiting_functions(every, force=self.repl)
        self.blocking_funcs = functions_with(every, BLOCKING_STMTS, force=self.repl)
        self.expect_funcs = functions_with(every, (A.Expect,), force=self.repl)
        for key, f in funcs.items():
            cell = FuncCell(f.name, len(f.params), key in waiting, f.span)
            if isinstance(key, tuple):
                self.scenes.setdefault(key[0], SceneInfo(key[0])).func_cells[f.name] = cell
                continue
            old = self.funcs.get(f.name)
            if old is not None:  # the REPL redefines: call sites hold the cell, keep it
                old.is_async, old.nparams, old.span = cell.is_async, cell.nparams, cell.span
                cell = old
            self.funcs[f.name] = cell
        for s in scene_decls:
            self._scene_vars(s)
        for d in lets:
            slot = self.global_slots[d.name]
            if d.name in overrides:
                done.inits.append((slot, ((lambda fr, v=overrides[d.name]: v), False)))
            else:
                assert isinstance(d.value, A.Expr)
                done.inits.append((slot, self.compiler.expr_in(
                    d.value, Scope(Layout(), None, "init", "let"))))
        for d in decls:
            if isinstance(d, A.Func):
                self._compile_func(self.funcs[d.name], d, None)
            elif isinstance(d, A.Handler):
                if self.repl:
                    replaced = self._remove_handlers(d.event)
                    if replaced:
                        done.notes.append(f"replaced the handler for '{replaced}'")
                done.handlers.append(self._add_handler(d, None))
            elif isinstance(d, A.Timer):
                spec = self._timer_spec(d, None)
                self.top_timers.append(spec)
                done.timers.append(spec)
            elif isinstance(d, A.Scene):
                self._compile_scene(d)
            elif isinstance(d, A.Connection | A.Server):
                self.endpoints[d.name].compile_config(self.compiler)
        self._update_watched()
        self._update_endpoints()
        return done

    def _remove_handlers(self, ev: A.Event) -> str | None:
        """REPL: drop the project handlers for the same event (and mode) as `ev`."""
        key = event_key(ev, None, self)
        old = self.handlers.get(key)
        if not old:
            return None
        keep = [h for h in old if h.mode != ev.mode]
        if len(keep) == len(old):
            return None
        if keep:
            self.handlers[key] = keep
        else:
            del self.handlers[key]
        return describe_event(ev)

    def _scene_vars(self, s: A.Scene) -> None:
        info = self.scenes.setdefault(s.name, SceneInfo(s.name))
        info.var_slots = {}
        for item in s.items:
            if isinstance(item, A.Let) and item.name not in info.var_slots:
                info.var_slots[item.name] = len(info.var_slots)
        info.watched = [False] * len(info.var_slots)

    def _compile_scene(self, s: A.Scene) -> None:
        info = self.scenes[s.name]
        info.var_inits = []
        info.handlers = {}
        info.timers = []
        for item in s.items:
            if isinstance(item, A.Let):
                assert isinstance(item.value, A.Expr)
                layout = Layout()
                compiled = self.compiler.expr_in(item.value, Scope(layout, info, "init", "let"))
                info.var_inits.append((info.var_slots[item.name], compiled, layout.size))
            elif isinstance(item, A.Func):
                self._compile_func(info.func_cells[item.name], item, info)
            elif isinstance(item, A.Handler):
                self._add_handler(item, info)
            elif isinstance(item, A.Timer):
                info.timers.append(self._timer_spec(item, info))

    def _compile_func(self, cell: FuncCell, d: A.Func, scene: SceneInfo | None) -> None:
        scope = Scope(Layout(), scene, "func", f"func {d.name}")
        (body, is_async), _, size = self.compiler.body(d.body, scope, d.params)
        if is_async and not cell.is_async:  # REPL: a redefinition may start to wait
            cell.is_async = True
        cell.body, cell.size = body, size
        if cell.is_async and not is_async:
            sync_body = body

            async def as_async(fr: list) -> Any:
                return sync_body(fr)
            cell.body = as_async

    def _add_handler(self, d: A.Handler, scene: SceneInfo | None) -> Handler:
        key = event_key(d.event, scene, self)
        h = Handler(d.event, key, scene, d.span)
        scope = Scope(Layout(), scene, "handler", h.what)
        (h.body, h.is_async), slots, h.size = self.compiler.body(
            d.body, scope, (d.event.as_name, d.event.from_name))
        h.as_slot, h.from_slot = slots
        scene_name = scene.name if scene is not None else None
        h.blocks = self.repl or body_has(d.body, BLOCKING_STMTS, self.blocking_funcs,
                                         scene_name, self.fn_decls)
        h.uses_expect = self.uses_expect(d.body, scene_name)
        table = scene.handlers if scene is not None else self.handlers
        table.setdefault(key, []).append(h)
        if key == ("input",):
            self.wants_input = True
        return h

    def _timer_spec(self, t: A.Timer, scene: SceneInfo | None) -> TimerSpec:
        interval = self.compiler.expr_in(t.interval, Scope(Layout(), scene, "init", "timer"))
        scope = Scope(Layout(), scene, "timer", f"{t.kind} block")
        body, _, size = self.compiler.body(t.body, scope)
        return TimerSpec(t.kind, interval, body, size, t.span,
                         self.uses_expect(t.body, scene.name if scene else None))

    def uses_expect(self, body: A.Block, scene: str | None) -> bool:
        return self.repl or body_has(body, (A.Expect,), self.expect_funcs, scene, self.fn_decls)

    def _update_endpoints(self) -> None:
        """From the handlers (project and every scene), for each connection or server:
        `inline_ok`, whether its messages may run their handlers inside its reader task (no
        receive handler can wait for long, nor, when one reads JSON, an error handler: a
        message that is not JSON runs the error event in place); `expecting`, which of its
        events have a handler that may `expect`."""
        def of(key: tuple) -> list[Handler]:
            handlers = list(self.handlers.get(key, ()))
            for info in self.scenes.values():
                handlers += info.handlers.get(key, [])
            return handlers

        for name, ep in self.endpoints.items():
            receive = of(("ws", "receive", name))
            start = of(("ws", "start", name))
            ep.expecting = frozenset(kind for kind, hs in (("start", start), ("receive", receive))
                                     if any(h.uses_expect for h in hs))
            inline = receive + of(("ws", "error", name)) \
                if any(h.mode == "json" for h in receive) else receive
            ep.inline_ok = not self.repl and not any(h.blocks for h in inline)

    def _update_watched(self) -> None:
        keys = set(self.handlers)
        for info in self.scenes.values():
            keys.update(info.handlers)
        for key in keys:
            if key[0] != "change":
                continue
            if key[1] is None:
                index = self.global_slots.get(key[2])
                if index is not None:
                    self.watched[index] = True
            else:
                info = self.scenes[key[1]]
                info.watched[info.var_slots[key[2]]] = True

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
            from lang.wire.keepalive import KeepAlive

            self._keepalive = KeepAlive(self.spawn)
            self.spawn(self._keepalive.run)
        self._keepalive.add(ws)

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
            return self.exit_code
        return 1 if self.failed else 0

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
            self.failure(e, h.what, h.span)
        finally:
            if uses_expect:
                self.expect_active -= 1

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
        self.diag(e.format())
        if self.fail_fast:
            self.request_exit(1)

    def unhandled_ws_error(self, text: str) -> None:
        """A websocket error that no `on websocket error` handler takes."""
        self.failed = True
        self.diag(text)
        if self.fail_fast:
            self.request_exit(1)

    def assertion(self, e: AssertFailed) -> None:
        self.failed = True
        from lang.errors import quote_source
        message = f": {e.message}" if e.message else ""
        self.diag(f"{e.span}: assertion failed{message}\n{quote_source(e.span)}")
        self.request_exit(1)

    def internal_error(self, what: str, e: BaseException | None = None) -> None:
        self.failed = True
        trace = "".join(traceback.format_exception(e)) if e is not None \
            else traceback.format_exc()
        self.diag(f"evt: internal error in {what} (a bug in evt, please report it):\n{trace}")

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

    # ------------------------------------------------------------ statements

    async def emit(self, name: str, value: Any, inv: Inv, span: A.Span) -> None:
        if inv.depth >= MAX_DEPTH:
            raise EvtRuntimeError(f"too much recursion: emit nested more than {MAX_DEPTH} deep",
                                  span)
        await self.dispatch(("event", name), value, None, inv.depth + 1)
        self._stop_if_exiting()

    async def change_scene(self, name: str, inv: Inv | None, span: A.Span) -> None:
        info = self.scenes.get(name)
        if info is None:
            raise EvtRuntimeError(f"unknown scene '{name}'", span)
        depth = inv.depth + 1 if inv is not None else 0
        if depth >= MAX_DEPTH:
            raise EvtRuntimeError("too much recursion: scene changes nested too deep", span)
        old = self.current
        if old is not None:
            try:
                await self._scene_event(old, "scene stop", depth)
            finally:  # an `exit` in `on scene stop` still leaves the scene, once
                for t in list(old.timers):
                    t.evt_cancel()
                if self.current is old:
                    self.current = None
        act = Activation(info)
        self.current = act
        if self.verbose:
            self.log(f"scene: {name}")
        for slot, (fn, is_async), size in info.var_inits:
            fr: list[Any] = [None] * size
            fr[0] = inv if inv is not None else Inv(self, f"scene {name}", span)
            fr[1] = act.vars
            act.vars[slot] = (await fn(fr)) if is_async else fn(fr)
        for spec in info.timers:
            self._start_timer_spec(spec, act)
        await self._scene_event(act, "scene start", depth)

    async def _scene_event(self, act: Activation, kind: str, depth: int) -> None:
        for h in act.info.handlers.get((kind,), ()):
            if self.exiting and not self.shutting_down:
                break
            await self.run_handler(h, None, None, depth, act)
        self._stop_if_exiting()

    def new_timer(self, kind: str, seconds: float, body: Any, span: A.Span, what: str,
                  scene_vars: Any, uses_expect: bool) -> TimerHandle:
        """A timer started by a statement. Scene code's timers belong to the scene's
        activation; once that activation is over (the handler waited past a scene change),
        the timer is born cancelled: it never runs and keeps nothing alive."""
        cur = self.current
        if scene_vars is None:
            act = None
        elif cur is not None and cur.vars is scene_vars:
            act = cur
        else:
            handle = TimerHandle(self, kind, seconds, body, span, what, None,
                                 uses_expect=uses_expect)
            handle.cancelled = True
            return handle
        return TimerHandle(self, kind, seconds, body, span, what, act, uses_expect=uses_expect)

    def start_timer(self, spec: TimerSpec) -> None:
        """Start a top-level timer declared after the program began (the REPL's :load)."""
        self._start_timer_spec(spec, None)

    def _start_timer_spec(self, spec: TimerSpec, act: Activation | None) -> None:
        fn, is_async = spec.interval
        fr: list[Any] = [None] * max(spec.size, 3)
        fr[0] = Inv(self, spec.what, spec.span)
        fr[1] = act.vars if act is not None else None
        try:
            if is_async:
                raise EvtRuntimeError("a timer's interval cannot call a function that waits",
                                      spec.span)
            from lang.ops import duration
            seconds = duration(fn(fr), spec.kind, spec.span, allow_zero=spec.kind == "after")
        except Exception as e:  # a runtime error, or an `exit` or assert in the interval
            self.failure(e, spec.what, spec.span)
            return
        handle = TimerHandle(self, spec.kind, seconds, spec.body, spec.span, spec.what, act,
                             fresh=True, uses_expect=spec.uses_expect)
        handle.begin(fr)

    # -- network statements, dispatched to the endpoint objects (lang.ws)

    def describe(self, target: Any) -> str:
        return getattr(target, "label", None) or type_name(target)

    def _need(self, target: Any, method: str, verb: str, wanted: str, span: A.Span) -> Any:
        fn = getattr(target, method, None)
        if fn is None:
            raise EvtRuntimeError(f"'{verb}' needs {wanted}, got {type_name(target)}", span)
        return fn

    async def start(self, target: Any, span: A.Span) -> None:
        await self._need(target, "evt_start", "start", "a connection or a server", span)(span)

    async def stop(self, target: Any, span: A.Span) -> None:
        await self._need(target, "evt_stop", "stop", "a connection or a server", span)(span)

    async def send(self, target: Any, value: Any, mode: str | None, inv: Inv, span: A.Span
                   ) -> None:
        await self._need(target, "evt_send", "send", "a connection or a peer", span)(
            value, mode, inv, span)

    async def broadcast(self, target: Any, value: Any, mode: str | None, except_: Any,
                        span: A.Span) -> None:
        await self._need(target, "evt_broadcast", "broadcast", "a server", span)(
            value, mode, except_, span)

    async def close(self, target: Any, code: Any, reason: Any, span: A.Span) -> None:
        fn = self._need(target, "evt_close", "close", "a connection or a peer", span)
        if not valid_close_code(code):
            raise EvtRuntimeError(f"{to_str(code)} is not a close code a script may send "
                                  "(1000, 1001, 1003, 1007-1014, or 3000-4999)", span)
        if type(reason) is not str:
            raise EvtRuntimeError(f"a close reason must be a string, got {type_name(reason)}",
                                  span)
        if len(reason.encode("utf-8")) > 123:
            raise EvtRuntimeError("a close reason can be at most 123 bytes of UTF-8", span)
        await fn(code, reason, span)

    async def expect(self, inv: Inv, target: Any, mode: str | None,
                     matches: Callable[[Any], Awaitable[bool]], seconds: float, span: A.Span
                     ) -> tuple[bool, Any]:
        fn = self._need(target, "evt_expect", "expect", "a connection or a peer", span)
        return await fn(inv, mode, matches, seconds, span)

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

    async def main(self, inits: list[tuple[int, Any]], handle_signals: bool = True,
                   session: Callable[[], Awaitable[None]] | None = None) -> int:
        """Run the program to its end; return the exit code. A REPL passes its `session`,
        which runs beside the program and ends it when the user leaves."""
        if self.stdio is not None:
            self.stdio.attach(self._output_closed)
        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(self._watch_signals)
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self.hold()  # held until start-up is over, so the program cannot end early
                try:
                    if not await self.initialise(inits):
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

    # ------------------------------------------------------------ standard input

    def _start_input(self) -> None:
        """Standard input is one source: a thread reads it, a bounded queue (INPUT_BATCHES
        reads of at most 64 KiB) hands the lines over, and the thread waits when the queue
        is full, so stdin is read only as fast as the `on input` handlers take it."""
        self.hold()  # until the last line read is handled
        send, receive = anyio.create_memory_object_stream[list[bytes]](INPUT_BATCHES)
        token = anyio.lowlevel.current_token()
        thread = threading.Thread(target=self._read_input, args=(send, token), daemon=True,
                                  name="evt stdin")
        thread.start()
        self.spawn(self._take_input, receive)

    @staticmethod
    def _read_input(send: Any, token: Any) -> None:
        try:
            for batch in io_.read_lines(0):
                anyio.from_thread.run(send.send, batch, token=token)
        except BaseException:  # the program ended (the queue is closed) or the loop is gone
            pass
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except BaseException:
            pass

    async def _take_input(self, receive: Any) -> None:
        encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
        warned = False
        deadline = time.monotonic() + 0.02
        try:
            async with receive:
                async for batch in receive:
                    for raw in batch:
                        if time.monotonic() >= deadline:  # many short lines: let others run
                            await checkpoint()
                            deadline = time.monotonic() + 0.02
                        if isinstance(raw, io_.Piece) and not warned:
                            warned = True
                            self.diag(f"evt: warning: a line of standard input is longer "
                                      f"than {io_.MAX_LINE} bytes: it is handled in pieces")
                        if raw.endswith(b"\r"):
                            raw = raw[:-1]
                        line = raw.decode(encoding, "replace")
                        await self.dispatch(("input",), line)
        finally:
            self.release()


# lines of standard input waiting for their handlers: at most this many reads (64 KiB each)
INPUT_BATCHES = 4


def safe_text(text: str) -> str:
    return escape_remote(text)
