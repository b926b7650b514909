"""AST -> Python closures, compiled once, run many times.

Rules of this module:
- Every expression becomes `f(fr) -> value` and every statement `f(fr) -> signal`, where `fr`
  is the frame: a list whose slot 0 is the invocation (lang.runtime.Inv), slot 1 the current
  scene's variables, slot 2 a function's return value, and slots 3.. the locals, each name
  resolved to its slot here, once. Nothing dispatches on node types while a program runs.
- A closure is async only when it must wait (wait, network statements, emit, loops, calls to
  such functions); everything else is a plain function call, which is several times cheaper.
  Which functions wait is decided for the whole program before any body is compiled.
- Loops always yield to the event loop now and then, so a `while true {}` cannot starve other
  connections, and Ctrl-C reaches it.
- Signals: None (go on), BREAK, CONTINUE, RETURN.
"""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile.cluster import ClusterStatements
from lang.compile.expressions import ExpressionCompiler
from lang.compile.instances import InstanceExpressions
from lang.compile.metrics import MetricStatements
from lang.compile.smaller import SmallerStatements
from lang.compile.statements import StatementCompiler
from lang.compile.support import Compiled, Layout, Scope, sequence
from lang.compile.testing import TestStatements
from lang.runtime.host import CompilerHost

# ---------------------------------------------------------------- the compiler


class Compiler(StatementCompiler, SmallerStatements, MetricStatements, TestStatements,
               InstanceExpressions, ClusterStatements, ExpressionCompiler):
    """Compiles bodies for one Runtime. The runtime owns the variables, functions and
    endpoints; the compiler resolves names against it."""

    def __init__(self, rt: CompilerHost, builtins: dict[str, Any]) -> None:
        self.rt = rt
        self.builtins = builtins
        self.scope: Scope = Scope(Layout(), None, "init", "")

    # ------------------------------------------------------------ bodies

    def body(self, block: A.Block, scope: Scope, binds: tuple[str | None, ...] = ()
             ) -> tuple[Compiled, list[int | None], int]:
        """Compile a body; `binds` are names bound before it runs (params, as/from).
        Returns ((fn, is_async), slots of binds, frame size)."""
        saved = self.scope
        self.scope = scope
        try:
            slots = [scope.layout.declare(b) if b is not None else None for b in binds]
            compiled = self.block(block)
            return compiled, slots, scope.layout.size
        finally:
            self.scope = saved

    def expr_in(self, e: A.Expr, scope: Scope) -> Compiled:
        saved = self.scope
        self.scope = scope
        try:
            return self.expr(e)
        finally:
            self.scope = saved

    # ------------------------------------------------------------ blocks and statements

    def block(self, block: A.Block) -> Compiled:
        self.scope.layout.push()
        try:
            parts = [self.stmt(s) for s in block.stmts]
        finally:
            self.scope.layout.pop()
        return sequence(parts)

    def stmt(self, s: A.Stmt) -> Compiled:
        return getattr(self, "s_" + type(s).__name__)(s)

