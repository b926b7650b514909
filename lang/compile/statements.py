"""The compiler's statements: each `s_<Node>` turns one kind of statement into a
closure `f(fr) -> signal` (see lang.compile.compiler)."""

from __future__ import annotations

import time
from typing import Any

from lang import ast as A
from lang import ops
from lang.ast import Span
from lang.compile.support import (
    BREAK,
    CONTINUE,
    RETURN,
    YIELD_EVERY,
    Compiled,
    Fn,
    Scope,
    assign_to,
    evaluate,
    msg_timeout,
    range_of,
)
from lang.errors import EvtRuntimeError
from lang.runtime.core import (
    AssertFailed,
    ExitRequest,
    checkpoint,
)
from lang.values import brief, to_str


class StatementCompiler:
    """The statement half of the Compiler (a mixin: it uses the Compiler's rt, builtins,
    scope and expr)."""


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
        return assign_to(store, value, is_async)

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
            return assign_to(store, value, is_async)
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
                v = await evaluate(value, is_async, fr)
                o = await evaluate(obj, obj_async, fr)
                k = await evaluate(key, key_async, fr)
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
            v = await evaluate(value, is_async, fr)
            ops.set_attr(await evaluate(obj, obj_async, fr), name, v, span)
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
            if await evaluate(cond, ca, fr):
                return await evaluate(then, ta, fr)
            return await evaluate(orelse, oa, fr)
        return if_async, True

    def s_While(self, s: A.While) -> Compiled:
        cond, ca = self.expr(s.cond)
        body, ba = self.block(s.body)

        async def while_(fr: list) -> Any:
            deadline = time.monotonic() + YIELD_EVERY
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
                    deadline = time.monotonic() + YIELD_EVERY
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
                args = [await evaluate(f, a, fr) for f, a in argfns]
                return range_of(range_fn, args, span)
            source_fn: Fn = source
        else:
            src, source_async = self.expr(it)
            iterate = ops.pairs if len(s.names) == 2 else ops.iterate
            span = s.span

            async def source(fr: list) -> Any:
                return iterate(await evaluate(src, source_async, fr), span)
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
            deadline = time.monotonic() + YIELD_EVERY
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
                    deadline = time.monotonic() + YIELD_EVERY
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
            seconds = ops.duration(await evaluate(value, is_async, fr), "wait", span)
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
            await rt.start(await evaluate(target, ta, fr), span)
        return start, True

    def s_Stop(self, s: A.Stop) -> Compiled:
        target, ta = self.expr(s.target)
        rt, span = self.rt, s.span

        async def stop(fr: list) -> None:
            await rt.stop(await evaluate(target, ta, fr), span)
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
            send.parts = (s.target, value, mode, span)  # type: ignore[attr-defined]  # see
            return send, True                            # lang.interpreter.events reply_of

        async def send_async(fr: list) -> None:
            t = await evaluate(target, ta, fr)
            await rt.send(t, await evaluate(value, va, fr), mode, fr[0], span)
        return send_async, True

    def s_Close(self, s: A.Close) -> Compiled:
        target, ta = self.expr(s.target)
        code, ca = self.expr(s.code) if s.code is not None else ((lambda fr: 1000), False)
        reason, ra = self.expr(s.reason) if s.reason is not None else ((lambda fr: ""), False)
        rt, span = self.rt, s.span

        async def close(fr: list) -> None:
            t = await evaluate(target, ta, fr)
            c = await evaluate(code, ca, fr)
            await rt.close(t, c, await evaluate(reason, ra, fr), span)
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
            t = await evaluate(target, ta, fr)
            seconds = ops.duration(await evaluate(within, wa, fr), "expect ... within", span)

            failures: list[str] = []  # what the where condition could not judge

            async def matches(msg: Any) -> bool:
                if where is None:
                    return True
                fr[slot] = msg
                try:
                    return bool(await evaluate(where[0], where[1], fr))
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
            return await evaluate(orelse[0], orelse[1], fr)
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
            await rt.emit(name, await evaluate(value, va, fr), fr[0], span)
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
            rt.write(" ".join([show(await evaluate(f, a, fr)) for f, a in parts]))
        return print_async, True

    def s_Assert(self, s: A.Assert) -> Compiled:
        cond, ca = self.expr(s.cond)
        msg, ma = self.expr(s.message) if s.message is not None else ((lambda fr: None), False)
        span = s.span

        async def assert_(fr: list) -> None:
            if not await evaluate(cond, ca, fr):
                m = await evaluate(msg, ma, fr)
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
