"""Rule callbacks for SPEC §13's forms (`test "NAME" { }`, `skip [MESSAGE]`): a mixin of
transform.ToAst, as metrics.py is. It only changes shape (the checker judges names and
where `skip` may stand)."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.errors import AtToken


class TestSyntax:
    """(uses ToAst's _sp and _string)"""

    __test__ = False  # not a pytest class
    _sp: Any
    _string: Any  # [a STRING token] -> A.Const, or A.Interp for "${...}"

    def test_decl(self, c: list) -> A.Test:
        name = self._string(c[1])
        if not isinstance(name, A.Const):
            raise AtToken(c[1], "a test's name cannot use '${...}'")
        return A.Test(name.value, c[2], span=self._sp(c[1]))

    def skip_stmt(self, c: list) -> A.Skip:
        return A.Skip(c[1] if len(c) > 1 else None, span=self._sp(c[0]))
