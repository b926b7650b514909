"""The compiler's statements of SPEC §18's smaller additions (`wait until`): a mixin of the
Compiler, as lang.compile.statements is."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang import ops
from lang.compile.support import Compiled, evaluate, short_seconds
from lang.errors import EvtRuntimeError
from lang.values import to_str


class SmallerStatements:
    """`wait until` (a mixin: it uses the Compiler's rt, expr and block)."""

    rt: Any
    expr: Any
    block: Any

    def s_WaitUntil(self, s: A.WaitUntil) -> Compiled:
        cond, ca = self.expr(s.cond)
        within, wa = self.expr(s.within) if s.within is not None else ((lambda fr: 10.0), False)
        orelse = self.block(s.orelse) if s.orelse is not None else None
        rt, span = self.rt, s.span

        async def wait_until(fr: list) -> Any:
            seconds = ops.duration(await evaluate(within, wa, fr), "wait until ... within", span)

            async def holds() -> bool:
                return bool(await evaluate(cond, ca, fr))

            if await rt.wait_until(holds, seconds):
                return None
            if orelse is None:
                raise EvtRuntimeError(f"wait until timed out after {to_str(short_seconds(seconds))}s "
                                      "(the condition was still false)", span)
            return await evaluate(orelse[0], orelse[1], fr)
        return wait_until, True
