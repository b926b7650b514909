"""Rule callbacks for SPEC §18's smaller additions (`wait until`, `on input end`): a mixin of
transform.ToAst, in a module of its own so that ToAst stays small. Like ToAst, it only
changes shape."""

from __future__ import annotations

from typing import Any

from lang import ast as A


class SmallerAdditions:
    """`wait until COND [within D] [else { }]` and `on input end` (uses ToAst's _sp and
    _event)."""

    _sp: Any
    _event: Any

    def wait_until_stmt(self, c: list) -> A.WaitUntil:
        within = orelse = None
        for i in range(3, len(c) - 1, 2):  # WAIT UNTIL cond, then (WITHIN expr)? (ELSE block)?
            if c[i].type == "WITHIN":
                within = c[i + 1]
            else:
                orelse = c[i + 1]
        return A.WaitUntil(c[2], within, orelse, span=self._sp(c[0]))

    def ev_input_end(self, c: list) -> A.Event:
        return self._event("input end", c[0], None, None, (None, A.NOSPAN, None, A.NOSPAN))
