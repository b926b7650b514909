"""The compiler's shared parts: signals, the frame layout, and the small closures every
kind of statement and expression is built from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lang import ast as A
from lang.ast import Span
from lang.errors import EvtRuntimeError
from lang.limits import MAX_RESULT
from lang.runtime.host import CompilerHost
from lang.values import to_str

BREAK, CONTINUE, RETURN = 1, 2, 3
FIRST_LOCAL = 3
YIELD_EVERY = 0.02  # seconds a loop may run before it lets other tasks in

Fn = Callable[..., Any]
Compiled = tuple[Fn, bool]  # (closure, is_async)

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


def msg_timeout(rt: CompilerHost, target: Any, seconds: float) -> str:
    return f"expect on {rt.describe(target)} timed out after {to_str(short_seconds(seconds))}s"


def short_seconds(seconds: float) -> float | int:
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


def joined_text(values: list, span: Span) -> str:
    try:
        texts = [to_str(v) for v in values]
    except EvtRuntimeError as e:
        raise _at(e, span) from None
    size = sum(map(len, texts))
    if size > MAX_RESULT:
        raise _too_long_text(size, span)
    return "".join(texts)


def interp_fn(fns: list[Fn], span: Span) -> Fn:
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
        return joined_text([f(fr) for f in fns], span)
    return interp


def range_of(range_fn: Fn, args: list, span: Span) -> Any:
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


async def evaluate(f: Fn, is_async: bool, fr: list) -> Any:
    """Evaluate a closure that may or may not be async (in async contexts only)."""
    if is_async:
        return await f(fr)
    return f(fr)


def assign_to(store: Fn, value: Fn, is_async: bool) -> Compiled:
    if is_async:
        async def assign_async(fr: list) -> None:
            store(fr, await value(fr))
        return assign_async, True

    def assign(fr: list) -> None:
        store(fr, value(fr))
    return assign, False


def sequence(parts: list[Compiled]) -> Compiled:
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
                steps.append(sequence(run))
                run = []
            steps.append(p)
        else:
            run.append(p)
    if run:
        steps.append(sequence(run))

    async def seq_async(fr: list) -> Any:
        for f, a in steps:
            r = (await f(fr)) if a else f(fr)
            if r is not None:
                return r
        return None
    return seq_async, True
