"""AST -> Python closures, compiled once, run many times.

Rules of this module:
- Every expression becomes `f(fr) -> value` and every statement `f(fr) -> signal`, where `fr`
  is the frame: a list whose slot 0 is the invocation (lang.runtime.Inv), slot 1 the current
  scene's variables, slot 2 a function's return value, and slots 3.. the locals, each name
  resolved to its slot here, once. Nothing dispatches on node types while a program runs.
- A closure is async only when it must wait (wait, network statements, emit, loops, calls to
  such functions); everything else is a plain function call, which is several times cheaper.
  Which functions wait is decided for the whole program before any body is compiled.
- Loops always yield to the event loop now and then, so a `while true {}` cannot starve other
  connections, and Ctrl-C reaches it.
- Signals: None (go on), BREAK, CONTINUE, RETURN.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from lang import ast as A
from lang import ops
from lang.ast import Span
from lang.errors import EvtRuntimeError, Frame
from lang.limits import MAX_RESULT, PRODUCT_BITS_OK
from lang.runtime.core import (
    MAX_DEPTH,
    AssertFailed,
    ExitRequest,
    FuncCell,
    checkpoint,
)
from lang.values import brief, to_str

if TYPE_CHECKING:
    from lang.interpreter.program import Runtime

BREAK, CONTINUE, RETURN = 1, 2, 3
FIRST_LOCAL = 3
_YIELD_EVERY = 0.02  # seconds a loop may run before it lets other tasks in

Fn = Callable[..., Any]
Compiled = tuple[Fn, bool]  # (closure, is_async)


# ---------------------------------------------------------------- which bodies wait

WAITING_STMTS = (A.Wait, A.Start, A.Stop, A.Send, A.Broadcast, A.Close, A.Expect, A.Emit,
                  A.ChangeScene, A.While, A.For)


def _walk(node: Any) -> Any:
    """Every node under `node`, not entering timer blocks (they run as their own bodies)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, A.Timer):
            stack.append(n.interval)
            continue
        for name in getattr(n, "__slots__", ()):
            v = getattr(n, name, None)
            if isinstance(v, A.Node):
                stack.append(v)
            elif isinstance(v, tuple):
                stack.extend(x for x in v if isinstance(x, A.Node))


def functions_with(funcs: dict[Any, A.Func], kinds: tuple[type, ...], force: bool = False
                   ) -> set[Any]:
    """Keys of the functions whose body contains a node of `kinds`, or calls (transitively) a
    function that does. `funcs` maps a key (a name, or (scene, name) for a scene's function)
    to its declaration; a call inside a scene resolves to the scene's function first."""
    if force:
        return set(funcs)
    result: set[Any] = set()
    calls: dict[Any, set[str]] = {}
    for key, f in funcs.items():
        names: set[str] = set()
        for n in _walk(f.body):
            if isinstance(n, kinds):
                result.add(key)
            elif isinstance(n, A.Call):
                names.add(n.name)
        calls[key] = names
    changed = True
    while changed:
        changed = False
        for key, names in calls.items():
            if key not in result and any(
                    _resolve_call(funcs, key, n) in result for n in names):
                result.add(key)
                changed = True
    return result


def _resolve_call(funcs: dict[Any, A.Func], caller: Any, name: str) -> Any:
    scene = caller[0] if isinstance(caller, tuple) else None
    if scene is not None and (scene, name) in funcs:
        return (scene, name)
    return name if name in funcs else None


def body_has(node: A.Node, kinds: tuple[type, ...], flagged: set[Any], scene: str | None,
             funcs: dict[Any, A.Func]) -> bool:
    """Whether a body (not entering timer blocks) contains a node of `kinds` or calls a
    flagged function."""
    for n in _walk(node):
        if isinstance(n, kinds):
            return True
        if isinstance(n, A.Call) and _resolve_call(funcs, (scene,) if scene else None,
                                                   n.name) in flagged:
            return True
    return False


def waiting_functions(funcs: dict[Any, A.Func], force: bool = False) -> set[Any]:
    """Functions that must be async: they wait themselves or call one that does."""
    return functions_with(funcs, WAITING_STMTS, force)


# Statements that may keep a handler waiting for long (while a receive handler waits, its
# connection would not be read if the handler ran in the reader): such handlers are queued.
BLOCKING_STMTS = (A.Wait, A.Expect, A.Emit, A.ChangeScene)


# ---------------------------------------------------------------- frame layout


class Layout:
    """Slots of one body (a handler, a function, a timer block): block scopes of name -> slot.
    Timer blocks started inside a body share its layout: they run on a copy of its frame."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, int]] = [{}]
        self.size = FIRST_LOCAL

    def push(self) -> None:
        self.scopes.append({})

    def pop(self) -> None:
        self.scopes.pop()

    def declare(self, name: str) -> int:
        slot = self.size
        self.size += 1
        self.scopes[-1][name] = slot
        return slot

    def lookup(self, name: str) -> int | None:
        for scope in reversed(self.scopes):
            slot = scope.get(name)
            if slot is not None:
                return slot
        return None


class Scope:
    """Where the body being compiled stands: its layout, scene, and what it is."""

    def __init__(self, layout: Layout, scene: Any, kind: str, what: str) -> None:
        self.layout = layout
        self.scene = scene  # lang.interpreter.SceneInfo or None
        self.kind = kind  # "func", "handler", "timer", "init", "repl"
        self.what = what


# ---------------------------------------------------------------- the compiler


class Compiler:
    """Compiles bodies for one Runtime. The runtime owns the variables, functions and
    endpoints; the compiler resolves names against it."""

    def __init__(self, rt: Runtime, builtins: dict[str, Any]) -> None:
        self.rt = rt
        self.builtins = builtins
        self.scope: Scope = Scope(Layout(), None, "init", "")

    # ------------------------------------------------------------ bodies

    def body(self, block: A.Block, scope: Scope, binds: tuple[str | None, ...] = ()
             ) -> tuple[Compiled, list[int | None], int]:
        """Compile a body; `binds` are names bound before it runs (params, as/from).
        Returns ((fn, is_async), slots of binds, frame size)."""
        saved = self.scope
        self.scope = scope
        try:
            slots = [scope.layout.declare(b) if b is not None else None for b in binds]
            compiled = self.block(block)
            return compiled, slots, scope.layout.size
        finally:
            self.scope = saved

    def expr_in(self, e: A.Expr, scope: Scope) -> Compiled:
        saved = self.scope
        self.scope = scope
        try:
            return self.expr(e)
        finally:
            self.scope = saved

    # ------------------------------------------------------------ blocks and statements

    def block(self, block: A.Block) -> Compiled:
        self.scope.layout.push()
        try:
            parts = [self.stmt(s) for s in block.stmts]
        finally:
            self.scope.layout.pop()
        return _sequence(parts)

    def stmt(self, s: A.Stmt) -> Compiled:
        return getattr(self, "s_" + type(s).__name__)(s)

    def s_ExprStmt(self, s: A.ExprStmt) -> Compiled:
        f, is_async = self.expr(s.expr)
        if self.scope.kind == "repl":
            rt = self.rt

            if is_async:
                async def show_async(fr: list) -> None:
                    rt.echo(await f(fr))
                return show_async, True

            def show(fr: list) -> None:
                rt.echo(f(fr))
            return show, False
        if is_async:
            async def run_async(fr: list) -> None:
                await f(fr)
            return run_async, True

        def run(fr: list) -> None:
            f(fr)
        return run, False

    def s_Let(self, s: A.Let) -> Compiled:
        if isinstance(s.value, A.Timer):
            slot = self.scope.layout.declare(s.name)
            return self._timer(s.value, slot, None)
        value, is_async = self.expr(s.value)
        if self.scope.kind == "repl" and len(self.scope.layout.scopes) == 2:
            store = self._store_global(self.rt.declare_global(s.name), s.span)
        else:
            slot = self.scope.layout.declare(s.name)

            def store(fr: list, v: Any) -> None:
                fr[slot] = v
        return _assign(store, value, is_async)

    def s_Assign(self, s: A.Assign) -> Compiled:
        t = s.target
        if isinstance(s.value, A.Timer):
            if isinstance(t, A.Name) and self.scope.layout.lookup(t.name) is not None:
                return self._timer(s.value, self.scope.layout.lookup(t.name), None)
            store = self._store(t)
            return self._timer(s.value, None, store)
        value, is_async = self.expr(s.value)
        store = self._store(t)
        if isinstance(t, A.Name):
            return _assign(store, value, is_async)
        obj, obj_async = self.expr(t.obj)
        if isinstance(t, A.Index):
            key, key_async = self.expr(t.index)
            span = t.span
            if not (is_async or obj_async or key_async):
                def set_item(fr: list) -> None:
                    v = value(fr)
                    o = obj(fr)
                    k = key(fr)
                    if type(o) is list and type(k) is int and -len(o) <= k < len(o):
                        o[k] = v
                    else:
                        ops.set_index(o, k, v, span)
                return set_item, False

            async def set_item_async(fr: list) -> None:
                v = await _ev(value, is_async, fr)
                o = await _ev(obj, obj_async, fr)
                k = await _ev(key, key_async, fr)
                ops.set_index(o, k, v, span)
            return set_item_async, True
        assert isinstance(t, A.Attr)
        name, span = t.name, t.span
        if not (is_async or obj_async):
            def set_field(fr: list) -> None:
                v = value(fr)
                o = obj(fr)
                if type(o) is dict:
                    o[name] = v
                else:
                    ops.set_attr(o, name, v, span)
            return set_field, False

        async def set_field_async(fr: list) -> None:
            v = await _ev(value, is_async, fr)
            ops.set_attr(await _ev(obj, obj_async, fr), name, v, span)
        return set_field_async, True

    def _store(self, t: A.Expr) -> Fn:
        """A function (fr, value) storing into the variable named by t (Index/Attr targets
        are handled by s_Assign)."""
        if not isinstance(t, A.Name):
            return lambda fr, v: None
        slot = self.scope.layout.lookup(t.name)
        if slot is not None:
            def store_local(fr: list, v: Any) -> None:
                fr[slot] = v
            return store_local
        scene = self.scope.scene
        if scene is not None and t.name in scene.var_slots:
            index = scene.var_slots[t.name]
            rt = self.rt

            def store_scene(fr: list, v: Any) -> None:
                vars_ = fr[1]
                old = vars_[index]
                vars_[index] = v
                if scene.watched[index]:
                    rt.scene_var_changed(scene, index, old, v)
            return store_scene
        index = self.rt.global_slots.get(t.name)
        if index is None:
            raise EvtRuntimeError(f"'{t.name}' is not declared", t.span)
        return self._store_global(index, t.span)

    def _store_global(self, index: int, span: Span) -> Fn:
        rt = self.rt
        g = rt.globals
        watched = rt.watched

        def store_global(fr: list, v: Any) -> None:
            old = g[index]
            g[index] = v
            if watched[index]:
                rt.global_changed(index, old, v)
        return store_global

    def s_If(self, s: A.If) -> Compiled:
        cond, ca = self.expr(s.cond)
        then, ta = self.block(s.then)
        if s.orelse is None:
            orelse, oa = (lambda fr: None), False
        elif isinstance(s.orelse, A.If):
            orelse, oa = self.s_If(s.orelse)
        else:
            orelse, oa = self.block(s.orelse)
        if not (ca or ta or oa):
            def if_(fr: list) -> Any:
                if cond(fr):
                    return then(fr)
                return orelse(fr)
            return if_, False

        async def if_async(fr: list) -> Any:
            if await _ev(cond, ca, fr):
                return await _ev(then, ta, fr)
            return await _ev(orelse, oa, fr)
        return if_async, True

    def s_While(self, s: A.While) -> Compiled:
        cond, ca = self.expr(s.cond)
        body, ba = self.block(s.body)

        async def while_(fr: list) -> Any:
            deadline = time.monotonic() + _YIELD_EVERY
            n = 0
            while (await cond(fr)) if ca else cond(fr):
                r = (await body(fr)) if ba else body(fr)
                if r is not None:
                    if r == BREAK:
                        break
                    if r == RETURN:
                        return r
                n += 1
                if not n & 63 and time.monotonic() >= deadline:
                    await checkpoint()
                    deadline = time.monotonic() + _YIELD_EVERY
            return None
        return while_, True

    def s_For(self, s: A.For) -> Compiled:
        it = s.iterable
        fast_range = (len(s.names) == 1 and isinstance(it, A.Call) and it.name == "range"
                      and 1 <= len(it.args) <= 3 and self._is_builtin_call(it))
        if fast_range:
            argfns = [self.expr(a) for a in it.args]
            source_async = any(a for _, a in argfns)
            range_fn = self.builtins["range"].fn
            span = it.span

            async def source(fr: list) -> Any:
                args = [await _ev(f, a, fr) for f, a in argfns]
                return _range_of(range_fn, args, span)
            source_fn: Fn = source
        else:
            src, source_async = self.expr(it)
            iterate = ops.pairs if len(s.names) == 2 else ops.iterate
            span = s.span

            async def source(fr: list) -> Any:
                return iterate(await _ev(src, source_async, fr), span)
            source_fn = source
        self.scope.layout.push()
        try:
            slots = [self.scope.layout.declare(n) for n in s.names]
            body, ba = self.block(s.body)
        finally:
            self.scope.layout.pop()
        first = slots[0]
        second = slots[1] if len(slots) == 2 else None

        async def for_(fr: list) -> Any:
            seq = await source_fn(fr)
            deadline = time.monotonic() + _YIELD_EVERY
            n = 0
            for x in seq:
                if second is None:
                    fr[first] = x
                else:
                    fr[first], fr[second] = x
                r = (await body(fr)) if ba else body(fr)
                if r is not None:
                    if r == BREAK:
                        break
                    if r == RETURN:
                        return r
                n += 1
                if not n & 63 and time.monotonic() >= deadline:
                    await checkpoint()
                    deadline = time.monotonic() + _YIELD_EVERY
            return None
        return for_, True

    def _is_builtin_call(self, c: A.Call) -> bool:
        scene = self.scope.scene
        if scene is not None and c.name in scene.func_cells:
            return False
        return c.name not in self.rt.funcs and c.name in self.builtins

    def s_Break(self, s: A.Break) -> Compiled:
        return (lambda fr: BREAK), False

    def s_Continue(self, s: A.Continue) -> Compiled:
        return (lambda fr: CONTINUE), False

    def s_Return(self, s: A.Return) -> Compiled:
        if s.value is None:
            return (lambda fr: RETURN), False
        value, is_async = self.expr(s.value)
        if is_async:
            async def ret_async(fr: list) -> int:
                fr[2] = await value(fr)
                return RETURN
            return ret_async, True

        def ret(fr: list) -> int:
            fr[2] = value(fr)
            return RETURN
        return ret, False

    def s_Wait(self, s: A.Wait) -> Compiled:
        value, is_async = self.expr(s.duration)
        span = s.span
        rt = self.rt

        async def wait(fr: list) -> None:
            seconds = ops.duration(await _ev(value, is_async, fr), "wait", span)
            await rt.sleep(seconds)
        return wait, True

    def s_Timer(self, s: A.Timer) -> Compiled:
        return self._timer(s, None, None)

    def _timer(self, t: A.Timer, slot: int | None, store: Fn | None) -> Compiled:
        """A timer started by a statement: its block runs later on a copy of this frame (the
        locals as they are when it starts); `slot`/`store` keep its handle first."""
        interval, ia = self.expr(t.interval)
        layout = self.scope.layout
        inner = Scope(layout, self.scope.scene, "timer", f"{t.kind} block")
        saved = self.scope
        self.scope = inner
        layout.push()
        try:
            body = self.block(t.body)
        finally:
            layout.pop()
            self.scope = saved
        rt = self.rt
        kind, span = t.kind, t.span
        scene = self.scope.scene
        uses_expect = rt.uses_expect(t.body, scene.name if scene is not None else None)

        def start(fr: list, seconds: Any) -> None:
            seconds = ops.duration(seconds, kind, span, allow_zero=(kind == "after"))
            handle = rt.new_timer(kind, seconds, body, span, f"{kind} block", fr[1], uses_expect)
            if slot is not None:
                fr[slot] = handle
            elif store is not None:
                store(fr, handle)
            frame = list(fr)
            frame.extend([None] * (layout.size - len(frame)))
            handle.begin(frame)

        if ia:
            async def timer_async(fr: list) -> None:
                start(fr, await interval(fr))
            return timer_async, True

        def timer(fr: list) -> None:
            start(fr, interval(fr))
        return timer, False

    # -- network statements: the runtime does the work, the closure gathers the values

    def s_Start(self, s: A.Start) -> Compiled:
        target, ta = self.expr(s.target)
        rt, span = self.rt, s.span

        async def start(fr: list) -> None:
            await rt.start(await _ev(target, ta, fr), span)
        return start, True

    def s_Stop(self, s: A.Stop) -> Compiled:
        target, ta = self.expr(s.target)
        rt, span = self.rt, s.span

        async def stop(fr: list) -> None:
            await rt.stop(await _ev(target, ta, fr), span)
        return stop, True

    def s_Send(self, s: A.Send) -> Compiled:
        target, ta = self.expr(s.target)
        value, va = self.expr(s.value)
        rt, span, mode = self.rt, s.span, s.mode
        if not (ta or va):
            async def send(fr: list) -> None:
                t = target(fr)
                try:
                    method = t.evt_send
                except AttributeError:
                    await rt.send(t, None, mode, fr[0], span)  # raises the runtime error
                    return
                await method(value(fr), mode, fr[0], span)
            return send, True

        async def send_async(fr: list) -> None:
            t = await _ev(target, ta, fr)
            await rt.send(t, await _ev(value, va, fr), mode, fr[0], span)
        return send_async, True

    def s_Broadcast(self, s: A.Broadcast) -> Compiled:
        target, ta = self.expr(s.target)
        value, va = self.expr(s.value)
        exc, ea = self.expr(s.except_) if s.except_ is not None else ((lambda fr: None), False)
        rt, span, mode = self.rt, s.span, s.mode

        async def broadcast(fr: list) -> None:
            t = await _ev(target, ta, fr)
            v = await _ev(value, va, fr)
            await rt.broadcast(t, v, mode, await _ev(exc, ea, fr), span)
        return broadcast, True

    def s_Close(self, s: A.Close) -> Compiled:
        target, ta = self.expr(s.target)
        code, ca = self.expr(s.code) if s.code is not None else ((lambda fr: 1000), False)
        reason, ra = self.expr(s.reason) if s.reason is not None else ((lambda fr: ""), False)
        rt, span = self.rt, s.span

        async def close(fr: list) -> None:
            t = await _ev(target, ta, fr)
            c = await _ev(code, ca, fr)
            await rt.close(t, c, await _ev(reason, ra, fr), span)
        return close, True

    def s_Expect(self, s: A.Expect) -> Compiled:
        target, ta = self.expr(s.target)
        within, wa = self.expr(s.within) if s.within is not None else ((lambda fr: 10.0), False)
        layout = self.scope.layout
        at_prompt = self.scope.kind == "repl" and len(layout.scopes) == 2
        layout.push()
        try:
            slot = layout.declare(s.name)
            where = self.expr(s.where) if s.where is not None else None
            orelse = self.block(s.orelse) if s.orelse is not None else None
        finally:
            layout.pop()
        # the name stays bound for the rest of the enclosing block, in the same slot
        layout.scopes[-1][s.name] = slot
        rt, span, mode = self.rt, s.span, s.mode

        async def expect(fr: list) -> Any:
            t = await _ev(target, ta, fr)
            seconds = ops.duration(await _ev(within, wa, fr), "expect ... within", span)

            failures: list[str] = []  # what the where condition could not judge

            async def matches(msg: Any) -> bool:
                if where is None:
                    return True
                fr[slot] = msg
                try:
                    return bool(await _ev(where[0], where[1], fr))
                except EvtRuntimeError as e:
                    # a message of another shape (`ack.id` of a notification without "id")
                    # does not match, as a message that is not JSON does not in json mode
                    failures.append(e.message)
                    return False

            found, msg = await rt.expect(fr[0], t, mode, matches, seconds, span)
            if found:
                fr[slot] = msg
                return None
            fr[slot] = None
            if orelse is None:
                why = msg_timeout(rt, t, seconds) if msg is None \
                    else f"expect on {rt.describe(t)}: {msg}"
                if failures:
                    n = len(failures)
                    why += (f" (the where condition failed on {n} message{'s' * (n != 1)}: "
                            f"{failures[0]})")
                raise EvtRuntimeError(why, span)
            return await _ev(orelse[0], orelse[1], fr)
        if not at_prompt:
            return expect, True
        # at the REPL prompt, as a `let` there does, it binds a session variable: the
        # next input can use what it matched
        keep = self._store_global(self.rt.declare_global(s.name), span)

        async def expect_at_prompt(fr: list) -> Any:
            try:
                return await expect(fr)
            finally:
                keep(fr, fr[slot])
        return expect_at_prompt, True

    def s_Emit(self, s: A.Emit) -> Compiled:
        value, va = self.expr(s.value) if s.value is not None else ((lambda fr: None), False)
        rt, name, span = self.rt, s.name, s.span

        async def emit(fr: list) -> None:
            await rt.emit(name, await _ev(value, va, fr), fr[0], span)
        return emit, True

    def s_ChangeScene(self, s: A.ChangeScene) -> Compiled:
        rt, name, span = self.rt, s.name, s.span

        async def change(fr: list) -> None:
            await rt.change_scene(name, fr[0], span)
        return change, True

    def s_Print(self, s: A.Print) -> Compiled:
        parts = [self.expr(v) for v in s.values]
        rt, span = self.rt, s.span

        def show(v: Any) -> str:
            try:
                return to_str(v)
            except EvtRuntimeError as e:  # too large to show: point at this statement
                e.span = span
                raise
        if not any(a for _, a in parts):
            fns = [f for f, _ in parts]
            if len(fns) == 1:
                only = fns[0]

                def print1(fr: list) -> None:
                    v = only(fr)
                    rt.write(v if type(v) is str else show(v))
                return print1, False

            def print_(fr: list) -> None:
                rt.write(" ".join([show(f(fr)) for f in fns]))
            return print_, False

        async def print_async(fr: list) -> None:
            rt.write(" ".join([show(await _ev(f, a, fr)) for f, a in parts]))
        return print_async, True

    def s_Assert(self, s: A.Assert) -> Compiled:
        cond, ca = self.expr(s.cond)
        msg, ma = self.expr(s.message) if s.message is not None else ((lambda fr: None), False)
        span = s.span

        async def assert_(fr: list) -> None:
            if not await _ev(cond, ca, fr):
                m = await _ev(msg, ma, fr)
                raise AssertFailed(to_str(m) if m is not None else "", span)
        if ca or ma:
            return assert_, True

        def assert_sync(fr: list) -> None:
            if not cond(fr):
                m = msg(fr)
                raise AssertFailed(to_str(m) if m is not None else "", span)
        return assert_sync, False

    def s_Exit(self, s: A.Exit) -> Compiled:
        code, ca = self.expr(s.code) if s.code is not None else ((lambda fr: None), False)
        span = s.span

        def check(c: Any) -> int | None:
            if c is not None and (type(c) is not int or not 0 <= c <= 255):
                raise EvtRuntimeError(f"an exit code must be an int from 0 to 255, got "
                                      f"{brief(c)}", span)
            return c

        if ca:
            async def exit_async(fr: list) -> None:
                raise ExitRequest(check(await code(fr)))
            return exit_async, True

        def exit_(fr: list) -> None:
            raise ExitRequest(check(code(fr)))
        return exit_, False

    def s_Cancel(self, s: A.Cancel) -> Compiled:
        timer, ta = self.expr(s.timer)
        span = s.span

        def cancel_value(t: Any) -> None:
            if t is None:
                return
            cancel = getattr(t, "evt_cancel", None)
            if cancel is None:
                raise EvtRuntimeError(f"cancel needs a timer, got {ops.type_name(t)}", span)
            cancel()

        if ta:
            async def cancel_async(fr: list) -> None:
                cancel_value(await timer(fr))
            return cancel_async, True
        return (lambda fr: cancel_value(timer(fr))), False

    # ------------------------------------------------------------ expressions

    def expr(self, e: A.Expr) -> Compiled:
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Const(self, e: A.Const) -> Compiled:
        v = e.value
        return (lambda fr: v), False

    def e_Name(self, e: A.Name) -> Compiled:
        slot = self.scope.layout.lookup(e.name)
        if slot is not None:
            return itemgetter(slot), False
        scene = self.scope.scene
        if scene is not None and e.name in scene.var_slots:
            index = scene.var_slots[e.name]
            return (lambda fr: fr[1][index]), False
        index = self.rt.global_slots.get(e.name)
        if index is not None:
            g = self.rt.globals
            return (lambda fr: g[index]), False
        endpoint = self.rt.endpoint(e.name)
        if endpoint is not None:
            return (lambda fr: endpoint), False
        span, name = e.span, e.name

        def unknown(fr: list) -> Any:  # only the REPL gets here: the checker stops files
            raise EvtRuntimeError(f"unknown name '{name}'", span)
        return unknown, False

    def e_Interp(self, e: A.Interp) -> Compiled:
        parts: list[Compiled] = []
        for p in e.parts:
            if isinstance(p, str):
                parts.append(((lambda fr, s=p: s), False))
            else:
                parts.append(self.expr(p))
        span = e.span
        if any(a for _, a in parts):
            async def interp_async(fr: list) -> str:
                return _joined([await _ev(f, a, fr) for f, a in parts], span)
            return interp_async, True
        return _interp([f for f, _ in parts], span), False

    def e_ListLit(self, e: A.ListLit) -> Compiled:
        items = [self.expr(x) for x in e.items]
        if any(a for _, a in items):
            async def list_async(fr: list) -> list:
                return [await _ev(f, a, fr) for f, a in items]
            return list_async, True
        fns = [f for f, _ in items]
        return (lambda fr: [f(fr) for f in fns]), False

    def e_MapLit(self, e: A.MapLit) -> Compiled:
        keys = e.keys
        values = [self.expr(x) for x in e.values]
        if any(a for _, a in values):
            async def map_async(fr: list) -> dict:
                return {k: await _ev(f, a, fr) for k, (f, a) in zip(keys, values, strict=True)}
            return map_async, True
        pairs = [(k, f) for k, (f, _) in zip(keys, values, strict=True)]
        return (lambda fr: {k: f(fr) for k, f in pairs}), False

    def e_Unary(self, e: A.Unary) -> Compiled:
        operand, oa = self.expr(e.operand)
        span = e.span
        if e.op == "not":
            if oa:
                async def not_async(fr: list) -> bool:
                    return not await operand(fr)
                return not_async, True
            return (lambda fr: not operand(fr)), False
        op = ops.neg if e.op == "-" else ops.pos
        if oa:
            async def unary_async(fr: list) -> Any:
                return op(await operand(fr), span)
            return unary_async, True
        return (lambda fr: op(operand(fr), span)), False

    def e_Logic(self, e: A.Logic) -> Compiled:
        left, la = self.expr(e.left)
        right, ra = self.expr(e.right)
        if e.op == "and":
            if la or ra:
                async def and_async(fr: list) -> Any:
                    v = await _ev(left, la, fr)
                    return (await _ev(right, ra, fr)) if v else v
                return and_async, True
            return (lambda fr: left(fr) and right(fr)), False
        if la or ra:
            async def or_async(fr: list) -> Any:
                v = await _ev(left, la, fr)
                return v if v else await _ev(right, ra, fr)
            return or_async, True
        return (lambda fr: left(fr) or right(fr)), False

    def e_Binary(self, e: A.Binary) -> Compiled:
        left, la = self.expr(e.left)
        right, ra = self.expr(e.right)
        slow = ops.BINARY[e.op]
        span = e.span
        if la or ra:
            async def binary_async(fr: list) -> Any:
                a = await _ev(left, la, fr)
                return slow(a, await _ev(right, ra, fr), span)
            return binary_async, True
        maker = _FAST.get(e.op)
        if maker is None:
            return (lambda fr: slow(left(fr), right(fr), span)), False
        if isinstance(e.right, A.Const) and type(e.right.value) is int:
            const_maker = _FAST_CONST.get(e.op)
            if const_maker is not None:
                return const_maker(left, e.right.value, slow, span), False
        return maker(left, right, slow, span), False

    def e_Index(self, e: A.Index) -> Compiled:
        obj, oa = self.expr(e.obj)
        key, ka = self.expr(e.index)
        span = e.span
        if oa or ka:
            async def index_async(fr: list) -> Any:
                o = await _ev(obj, oa, fr)
                return ops.index(o, await _ev(key, ka, fr), span)
            return index_async, True
        slow = ops.index

        def index(fr: list) -> Any:
            o = obj(fr)
            k = key(fr)
            t = type(o)
            if t is list and type(k) is int and -len(o) <= k < len(o):
                return o[k]
            if t is dict and type(k) is str and k in o:
                return o[k]
            return slow(o, k, span)
        return index, False

    def e_Attr(self, e: A.Attr) -> Compiled:
        obj, oa = self.expr(e.obj)
        name, span = e.name, e.span
        if oa:
            async def attr_async(fr: list) -> Any:
                return ops.attr(await obj(fr), name, span)
            return attr_async, True
        slow = ops.attr

        def attr(fr: list) -> Any:
            o = obj(fr)
            if type(o) is dict and name in o:
                return o[name]
            return slow(o, name, span)
        return attr, False

    def e_Call(self, e: A.Call) -> Compiled:
        scene = self.scope.scene
        cell = None
        if scene is not None:
            cell = scene.func_cells.get(e.name)
        if cell is None:
            cell = self.rt.funcs.get(e.name)
        args = [self.expr(a) for a in e.args]
        if cell is not None:
            return self._user_call(cell, args, e.span)
        b = self.builtins.get(e.name)
        if b is None:
            name, span = e.name, e.span

            def unknown(fr: list) -> Any:
                raise EvtRuntimeError(f"unknown function '{name}'", span)
            return unknown, False
        return self._builtin_call(b, args, e.span)

    def _builtin_call(self, b: Any, args: list[Compiled], span: Span) -> Compiled:
        fn = b.fn
        name = b.name
        if b.context:
            rt = self.rt
            inner = fn

            def fn(*a: Any) -> Any:
                return inner(rt, *a)

        def fail(e: Exception) -> EvtRuntimeError:
            if isinstance(e, EvtRuntimeError):
                if e.span is A.NOSPAN:
                    e.span = span
                return e
            if isinstance(e, RecursionError):
                return EvtRuntimeError(f"{name}: the value is nested too deeply", span)
            return EvtRuntimeError(f"{name}: {e}", span)

        caught = (EvtRuntimeError, ValueError, TypeError, OverflowError, ZeroDivisionError,
                  KeyError, IndexError, UnicodeError, RecursionError, MemoryError)
        if any(a for _, a in args):
            async def call_async(fr: list) -> Any:
                values = [await _ev(f, a, fr) for f, a in args]
                try:
                    return fn(*values)
                except caught as e:
                    raise fail(e) from None
            return call_async, True
        fns = [f for f, _ in args]
        if len(fns) == 0:
            def call0(fr: list) -> Any:
                try:
                    return fn()
                except caught as e:
                    raise fail(e) from None
            return call0, False
        if len(fns) == 1:
            a0 = fns[0]

            def call1(fr: list) -> Any:
                v = a0(fr)
                try:
                    return fn(v)
                except caught as e:
                    raise fail(e) from None
            return call1, False
        if len(fns) == 2:
            a0, a1 = fns

            def call2(fr: list) -> Any:
                v0 = a0(fr)
                v1 = a1(fr)
                try:
                    return fn(v0, v1)
                except caught as e:
                    raise fail(e) from None
            return call2, False

        def calln(fr: list) -> Any:
            values = [f(fr) for f in fns]
            try:
                return fn(*values)
            except caught as e:
                raise fail(e) from None
        return calln, False

    def _user_call(self, cell: FuncCell, args: list[Compiled], span: Span) -> Compiled:
        fns = [f for f, _ in args]
        args_async = any(a for _, a in args)
        n = len(fns)
        what = f"func {cell.name}"

        def frame_for(fr: list, values: list) -> list:
            if n != cell.nparams:  # only in the REPL: redefined with another arity since
                raise EvtRuntimeError(  # this call was compiled
                    f"{cell.name}() takes {cell.nparams} argument"
                    f"{'' if cell.nparams == 1 else 's'}, got {n} (it was redefined)", span)
            inv = fr[0]
            if inv.depth >= MAX_DEPTH:
                raise EvtRuntimeError(
                    f"too much recursion: calls nested more than {MAX_DEPTH} deep", span)
            new = [None] * cell.size
            new[0] = inv
            new[1] = fr[1]
            new[FIRST_LOCAL:FIRST_LOCAL + n] = values
            return new

        if cell.is_async or args_async:
            async def call_async(fr: list) -> Any:
                values = [await _ev(f, a, fr) for f, a in args]
                new = frame_for(fr, values)
                inv = fr[0]
                inv.depth += 1
                try:
                    await _ev(cell.body, cell.is_async, new)
                except EvtRuntimeError as e:
                    e.frames.append(Frame(what, span))
                    raise
                except RecursionError:
                    raise EvtRuntimeError("too much recursion (the interpreter's stack is "
                                          "full)", span) from None
                finally:
                    inv.depth -= 1
                return new[2]
            return call_async, True

        def call(fr: list) -> Any:
            new = frame_for(fr, [f(fr) for f in fns])
            inv = fr[0]
            inv.depth += 1
            try:
                cell.body(new)
            except EvtRuntimeError as e:
                e.frames.append(Frame(what, span))
                raise
            except RecursionError:
                raise EvtRuntimeError("too much recursion (the interpreter's stack is full)",
                                      span) from None
            finally:
                inv.depth -= 1
            return new[2]
        return call, False


def msg_timeout(rt: Runtime, target: Any, seconds: float) -> str:
    return f"expect on {rt.describe(target)} timed out after {to_str(_short(seconds))}s"


def _short(seconds: float) -> float | int:
    return int(seconds) if float(seconds).is_integer() else round(seconds, 3)


# An interpolation's text is at most MAX_RESULT characters, checked before it is built (a
# string doubled forty times by "${s}${s}" was a MemoryError). A value too large to show
# (to_str's error has no span) points at the string. The common lengths are unrolled: an
# interpolation is on the hot path of many handlers.


def _too_long_text(size: int, span: Span) -> EvtRuntimeError:
    return EvtRuntimeError(f"the string is too large: {size:,} characters (the most is "
                           f"{MAX_RESULT:,})", span)


def _at(e: EvtRuntimeError, span: Span) -> EvtRuntimeError:
    if e.span is A.NOSPAN:
        e.span = span
    return e


def _joined(values: list, span: Span) -> str:
    try:
        texts = [to_str(v) for v in values]
    except EvtRuntimeError as e:
        raise _at(e, span) from None
    size = sum(map(len, texts))
    if size > MAX_RESULT:
        raise _too_long_text(size, span)
    return "".join(texts)


def _interp(fns: list[Fn], span: Span) -> Fn:
    if len(fns) == 1:  # "${x}": as long as what is shown
        only = fns[0]

        def interp1(fr: list) -> str:
            try:
                return to_str(only(fr))
            except EvtRuntimeError as e:
                raise _at(e, span) from None
        return interp1
    if len(fns) == 2:
        a, b = fns

        def interp2(fr: list) -> str:
            try:
                x = to_str(a(fr))
                y = to_str(b(fr))
            except EvtRuntimeError as e:
                raise _at(e, span) from None
            if len(x) + len(y) > MAX_RESULT:
                raise _too_long_text(len(x) + len(y), span)
            return x + y
        return interp2
    if len(fns) == 3:
        a, b, c = fns

        def interp3(fr: list) -> str:
            try:
                x = to_str(a(fr))
                y = to_str(b(fr))
                z = to_str(c(fr))
            except EvtRuntimeError as e:
                raise _at(e, span) from None
            if len(x) + len(y) + len(z) > MAX_RESULT:
                raise _too_long_text(len(x) + len(y) + len(z), span)
            return x + y + z
        return interp3

    def interp(fr: list) -> str:
        return _joined([f(fr) for f in fns], span)
    return interp


def _range_of(range_fn: Fn, args: list, span: Span) -> Any:
    """`for i in range(...)` walks a Python range: no list of a million ints is built.
    Arguments other than ints go to the built-in itself, for its conversions and errors
    (an integral float, `pow(2.0, 60)`, is an int here, as it is there)."""
    args = [int(a) if type(a) is float and a.is_integer() else a for a in args]
    if any(type(a) is not int for a in args) or (len(args) == 3 and args[2] == 0):
        try:
            return range_fn(*args)
        except EvtRuntimeError as e:
            if e.span is A.NOSPAN:
                e.span = span
            raise
    return range(*args)


async def _ev(f: Fn, is_async: bool, fr: list) -> Any:
    """Evaluate a closure that may or may not be async (in async contexts only)."""
    if is_async:
        return await f(fr)
    return f(fr)


def _assign(store: Fn, value: Fn, is_async: bool) -> Compiled:
    if is_async:
        async def assign_async(fr: list) -> None:
            store(fr, await value(fr))
        return assign_async, True

    def assign(fr: list) -> None:
        store(fr, value(fr))
    return assign, False


def _sequence(parts: list[Compiled]) -> Compiled:
    """A block: run statements in order until one gives a signal."""
    if not parts:
        return (lambda fr: None), False
    if not any(a for _, a in parts):
        fns = [f for f, _ in parts]
        if len(fns) == 1:
            return fns[0], False
        if len(fns) == 2:
            f0, f1 = fns

            def seq2(fr: list) -> Any:
                r = f0(fr)
                if r is not None:
                    return r
                return f1(fr)
            return seq2, False

        def seq(fr: list) -> Any:
            for f in fns:
                r = f(fr)
                if r is not None:
                    return r
            return None
        return seq, False
    if len(parts) == 1:
        return parts[0]
    # group runs of plain statements so only the waiting ones are awaited
    steps: list[Compiled] = []
    run: list[Compiled] = []
    for p in parts:
        if p[1]:
            if run:
                steps.append(_sequence(run))
                run = []
            steps.append(p)
        else:
            run.append(p)
    if run:
        steps.append(_sequence(run))

    async def seq_async(fr: list) -> Any:
        for f, a in steps:
            r = (await f(fr)) if a else f(fr)
            if r is not None:
                return r
        return None
    return seq_async, True


# ---------------------------------------------------------------- inlined fast paths


def _fast_add(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def add(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a + b
        return slow(a, b, span)
    return add


def _fast_sub(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def sub(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a - b
        return slow(a, b, span)
    return sub


def _fast_mul(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def mul(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int and \
                a.bit_length() + b.bit_length() <= PRODUCT_BITS_OK:
            return a * b
        return slow(a, b, span)  # and its limit on the size of the product
    return mul


def _fast_lt(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def lt(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a < b
        return slow(a, b, span)
    return lt


def _fast_le(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def le(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a <= b
        return slow(a, b, span)
    return le


def _fast_gt(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def gt(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a > b
        return slow(a, b, span)
    return gt


def _fast_ge(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def ge(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        if type(a) is int and type(b) is int:
            return a >= b
        return slow(a, b, span)
    return ge


def _fast_eq(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def eq(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        t = type(a)
        if t is type(b) and (t is int or t is str):
            return a == b
        return slow(a, b, span)
    return eq


def _fast_ne(left: Fn, right: Fn, slow: Fn, span: Span) -> Fn:
    def ne(fr: list) -> Any:
        a = left(fr)
        b = right(fr)
        t = type(a)
        if t is type(b) and (t is int or t is str):
            return a != b
        return slow(a, b, span)
    return ne


_FAST = {"+": _fast_add, "-": _fast_sub, "*": _fast_mul, "<": _fast_lt, "<=": _fast_le,
         ">": _fast_gt, ">=": _fast_ge, "==": _fast_eq, "!=": _fast_ne}


def _const_add(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def add_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a + c
        return slow(a, c, span)
    return add_c


def _const_sub(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def sub_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a - c
        return slow(a, c, span)
    return sub_c


def _const_lt(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def lt_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a < c
        return slow(a, c, span)
    return lt_c


def _const_eq(left: Fn, c: int, slow: Fn, span: Span) -> Fn:
    def eq_c(fr: list) -> Any:
        a = left(fr)
        if type(a) is int:
            return a == c
        return slow(a, c, span)
    return eq_c


_FAST_CONST = {"+": _const_add, "-": _const_sub, "<": _const_lt, "==": _const_eq}
