"""The compiler's expressions: each `e_<Node>` turns one kind of expression into a
closure `f(fr) -> value` (see lang.compile.compiler)."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from lang import ast as A
from lang import ops
from lang.ast import Span
from lang.compile.fast import FAST_BINARY, FAST_CONST
from lang.compile.support import FIRST_LOCAL, Compiled, evaluate, interp_fn, joined_text
from lang.errors import EvtRuntimeError, Frame
from lang.runtime.core import (
    MAX_DEPTH,
    FuncCell,
)


class ExpressionCompiler:
    """The expression half of the Compiler (a mixin: it uses the Compiler's rt, builtins
    and scope)."""


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
                return joined_text([await evaluate(f, a, fr) for f, a in parts], span)
            return interp_async, True
        return interp_fn([f for f, _ in parts], span), False

    def e_ListLit(self, e: A.ListLit) -> Compiled:
        items = [self.expr(x) for x in e.items]
        if any(a for _, a in items):
            async def list_async(fr: list) -> list:
                return [await evaluate(f, a, fr) for f, a in items]
            return list_async, True
        fns = [f for f, _ in items]
        return (lambda fr: [f(fr) for f in fns]), False

    def e_MapLit(self, e: A.MapLit) -> Compiled:
        keys = e.keys
        values = [self.expr(x) for x in e.values]
        if any(a for _, a in values):
            async def map_async(fr: list) -> dict:
                return {k: await evaluate(f, a, fr) for k, (f, a) in zip(keys, values, strict=True)}
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
                    v = await evaluate(left, la, fr)
                    return (await evaluate(right, ra, fr)) if v else v
                return and_async, True
            return (lambda fr: left(fr) and right(fr)), False
        if la or ra:
            async def or_async(fr: list) -> Any:
                v = await evaluate(left, la, fr)
                return v if v else await evaluate(right, ra, fr)
            return or_async, True
        return (lambda fr: left(fr) or right(fr)), False

    def e_Binary(self, e: A.Binary) -> Compiled:
        left, la = self.expr(e.left)
        right, ra = self.expr(e.right)
        slow = ops.BINARY[e.op]
        span = e.span
        if la or ra:
            async def binary_async(fr: list) -> Any:
                a = await evaluate(left, la, fr)
                return slow(a, await evaluate(right, ra, fr), span)
            return binary_async, True
        maker = FAST_BINARY.get(e.op)
        if maker is None:
            return (lambda fr: slow(left(fr), right(fr), span)), False
        if isinstance(e.right, A.Const) and type(e.right.value) is int:
            const_maker = FAST_CONST.get(e.op)
            if const_maker is not None:
                return const_maker(left, e.right.value, slow, span), False
        return maker(left, right, slow, span), False

    def e_Index(self, e: A.Index) -> Compiled:
        obj, oa = self.expr(e.obj)
        key, ka = self.expr(e.index)
        span = e.span
        if oa or ka:
            async def index_async(fr: list) -> Any:
                o = await evaluate(obj, oa, fr)
                return ops.index(o, await evaluate(key, ka, fr), span)
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
                values = [await evaluate(f, a, fr) for f, a in args]
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
                values = [await evaluate(f, a, fr) for f, a in args]
                new = frame_for(fr, values)
                inv = fr[0]
                inv.depth += 1
                try:
                    await evaluate(cell.body, cell.is_async, new)
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
