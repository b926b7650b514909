"""The compiler's statement of SPEC §13 (`skip [MESSAGE]`): a mixin of the Compiler, as
lang.compile.metrics is."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile.support import Compiled
from lang.runtime.core import SkipRequest
from lang.values import to_str


class TestStatements:
    """(a mixin: it uses the Compiler's expr)"""

    __test__ = False  # not a pytest class
    expr: Any

    def s_Skip(self, s: A.Skip) -> Compiled:
        span = s.span
        if s.message is None:
            def skip(fr: list) -> None:
                raise SkipRequest("", span)
            return skip, False
        msg, is_async = self.expr(s.message)

        def text(m: Any) -> str:
            return to_str(m) if m is not None else ""

        if is_async:
            async def skip_async(fr: list) -> None:
                raise SkipRequest(text(await msg(fr)), span)
            return skip_async, True

        def skip_with(fr: list) -> None:
            raise SkipRequest(text(msg(fr)), span)
        return skip_with, False
