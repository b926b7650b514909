"""Rule callbacks for SPEC §11's connection instances (`open NAME [with MAP]`, and the
targets `send p.up ...`): a mixin of transform.ToAst, as smaller.py is. Like ToAst, it only
changes shape."""

from __future__ import annotations

from typing import Any

from lang import ast as A


class InstanceSyntax:
    """`open NAME [with MAP]` and a target that is a name with fields (uses ToAst's _sp)."""

    _sp: Any

    def open_expr(self, c: list) -> A.Open:
        overrides = c[3] if len(c) == 4 else None  # OPEN NAME (WITH postfix)?
        return A.Open(c[1].value, overrides, span=self._sp(c[0]), name_span=self._sp(c[1]))

    def target_path(self, c: list) -> A.Attr:
        obj = c[0] if isinstance(c[0], A.Expr) else A.Name(c[0].value, span=self._sp(c[0]))
        return A.Attr(obj, c[2].value, span=self._sp(c[2]))

    def ping_expr(self, c: list) -> A.Ping:
        return A.Ping(c[1], span=self._sp(c[0]))

    def reject_stmt(self, c: list) -> A.Reject:
        # REJECT expr (COMMA expr)?
        return A.Reject(c[1], c[3] if len(c) > 3 else None, span=self._sp(c[0]))
