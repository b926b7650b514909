"""The compiler's statements of SPEC §12 (`count`, `measure`): a mixin of the Compiler, as
lang.compile.smaller is. Both are plain calls (nothing waits); with `--no-metrics` they
evaluate their value and record nothing."""

from __future__ import annotations

import math
from typing import Any

from lang import ast as A
from lang.compile.support import Compiled, evaluate
from lang.errors import EvtRuntimeError
from lang.values import type_name


def _number(value: Any, what: str, name: str, span: A.Span) -> float:
    if type(value) not in (int, float):
        raise EvtRuntimeError(f"{what} {name}: the value must be a number, not "
                              f"{type_name(value)}", span)
    if not math.isfinite(value):
        raise EvtRuntimeError(f"{what} {name}: the value must be a finite number, not "
                              f"{value}", span)
    return value


class MetricStatements:
    """`count NAME [VALUE]` and `measure NAME VALUE` (a mixin: it uses the Compiler's rt and
    expr)."""

    rt: Any
    expr: Any

    def s_Count(self, s: A.Count) -> Compiled:
        rt, name, span = self.rt, s.name, s.span
        if s.value is None:
            def count_one(fr: list) -> None:
                m = rt.metrics
                if m is not None:
                    m.count(name, 1)
            return count_one, False
        value, va = self.expr(s.value)

        async def count_async(fr: list) -> None:
            add(await evaluate(value, va, fr))

        def count(fr: list) -> None:
            add(value(fr))

        def add(v: Any) -> None:
            v = _number(v, "count", name, span)
            m = rt.metrics
            if m is not None:
                m.count(name, v)
        return (count_async, True) if va else (count, False)

    def s_Measure(self, s: A.Measure) -> Compiled:
        rt, name, span = self.rt, s.name, s.span
        value, va = self.expr(s.value)

        async def measure_async(fr: list) -> None:
            add(await evaluate(value, va, fr))

        def measure(fr: list) -> None:
            add(value(fr))

        def add(v: Any) -> None:
            v = _number(v, "measure", name, span)
            m = rt.metrics
            if m is not None:
                m.measure(name, v)
        return (measure_async, True) if va else (measure, False)
