"""The compiler's statements of SPEC §12 (`count`, `measure`): a mixin of the Compiler, as
lang.compile.smaller is. Both are plain calls (nothing waits); with `--no-metrics` they
evaluate their value and record nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
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
        value = s.value if s.value is not None else A.Const(1, span=s.span)
        return self._recording("count", s.name, value, s.span,
                               lambda m, name, v: m.count(name, v))

    def s_Measure(self, s: A.Measure) -> Compiled:
        return self._recording("measure", s.name, s.value, s.span,
                               lambda m, name, v: m.measure(name, v))

    def _recording(self, what: str, name: str, e: A.Expr, span: A.Span,
                   record: Callable[[Any, str, float], None]) -> Compiled:
        rt = self.rt
        value, va = self.expr(e)

        def add(v: Any) -> None:
            v = _number(v, what, name, span)
            m = rt.metrics
            if m is not None:
                record(m, name, v)

        async def recording_async(fr: list) -> None:
            add(await evaluate(value, va, fr))

        def recording(fr: list) -> None:
            add(value(fr))
        return (recording_async, True) if va else (recording, False)
