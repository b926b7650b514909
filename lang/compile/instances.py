"""The compiler's `open NAME [with MAP]` (SPEC §11): a mixin of the Compiler, as
lang.compile.smaller is. The declaration is looked up when the `open` runs, so a REPL input
that redefines it is seen by the next `open`."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile.support import Compiled, evaluate


class InstanceExpressions:
    """`open` (a mixin: it uses the Compiler's rt and expr)."""

    rt: Any
    expr: Any

    def e_Open(self, e: A.Open) -> Compiled:
        rt, name, span = self.rt, e.name, e.span
        if e.overrides is None:
            async def open_plain(fr: list) -> Any:
                return await rt.open(name, None, span)
            return open_plain, True
        overrides, oa = self.expr(e.overrides)

        async def open_with(fr: list) -> Any:
            return await rt.open(name, await evaluate(overrides, oa, fr), span)
        return open_with, True
