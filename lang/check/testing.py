"""Static checks of SPEC §13's `test` and `skip`: a mixin of the Checker (it uses its
error, _block and _expr). A test's name is unique in its file; `skip` stands in a test's
body or in a function (which a test may call: at run time `skip` anywhere else is a
runtime error)."""

from __future__ import annotations

from typing import Any

from lang import ast as A


class TestChecks:
    __test__ = False  # not a pytest class
    error: Any
    repl: bool
    _block: Any
    _expr: Any
    _test_names: dict[tuple[str, str], A.Span] | None = None

    def _test(self, d: A.Test, body: Any) -> None:
        if self._test_names is None:
            self._test_names = {}
        key = (d.span.file, d.name)
        first = self._test_names.setdefault(key, d.span)
        if first is not d.span:
            self.error(d.span, f"test \"{d.name}\" is already declared at line {first.line}")
        if not d.name.strip():
            self.error(d.span, "a test needs a name")
        self._block(d.body, body)

    def _s_Skip(self, s: A.Skip, body: Any) -> None:
        if s.message is not None:
            self._expr(s.message, body)
        if body.kind not in ("test", "func"):
            where = "at the prompt" if body.kind == "repl" else f"in a {body.kind}"
            if body.kind == "handler":
                where = "in an 'on' handler"
            self.error(s.span, f"'skip' works only in a test (or a function a test calls), "
                               f"not {where}")

    def _skip_hint(self, name: str) -> str:
        """`skip("why")` is a call of a function named skip (SPEC §13: `skip "why"`)."""
        return "; to skip a test write 'skip \"why\"' (no parentheses)" \
            if name == "skip" else ""
