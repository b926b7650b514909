"""The compiler's `open NAME [with MAP]` (SPEC §11): a mixin of the Compiler, as
lang.compile.smaller is. The declaration is looked up when the `open` runs, so a REPL input
that redefines it is seen by the next `open`."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile.support import Compiled, evaluate
from lang.errors import EvtRuntimeError
from lang.runtime.core import RejectRequest
from lang.values import brief, to_str


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

    def e_Ping(self, e: A.Ping) -> Compiled:
        rt, span = self.rt, e.span
        target, ta = self.expr(e.target)

        async def ping(fr: list) -> Any:
            return await rt.ping(await evaluate(target, ta, fr), span)
        return ping, True

    def s_Reject(self, s: A.Reject) -> Compiled:
        """`reject STATUS [, BODY]` (SPEC §15): ends the request handler with the refusal."""
        span = s.span
        status, sa = self.expr(s.status)
        body, ba = self.expr(s.body) if s.body is not None else ((lambda fr: ""), False)

        async def reject(fr: list) -> None:
            code = await evaluate(status, sa, fr)
            if type(code) is not int or not 400 <= code <= 599:
                raise EvtRuntimeError(f"reject takes an HTTP status from 400 to 599, got "
                                      f"{brief(code)}", span)
            text = await evaluate(body, ba, fr)
            raise RejectRequest(code, to_str(text) if text is not None else "", span)
        return reject, True
