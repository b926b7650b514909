"""Static checks: every problem in one run, before anything runs.

Rules of this module:
- The checker judges and changes nothing. It reports all it finds, in source order.
- Names resolve as the compiler resolves them: innermost local scope, then the current scene's
  variables, then project variables, then connection and server names. Calls resolve to the
  scene's functions, then project functions, then built-ins.
- A `Symbols` table holds what the program declares. The REPL keeps one across inputs, so a
  later line can use what an earlier one declared, and may redeclare it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from lang import ast as A
from lang import config
from lang.ast import Span
from lang.check.cluster import ClusterChecks
from lang.check.flow import FlowChecks
from lang.check.instances import InstanceChecks
from lang.check.literals import NOT_LITERAL, literal_value
from lang.check.metrics import MetricChecks
from lang.check.testing import TestChecks
from lang.errors import SOURCES, Diagnostic
from lang.wire.codes import SENDABLE, valid_close_code

_WS_EVENTS = {"websocket start", "websocket stop", "websocket error", "websocket receive",
              "websocket request"}
_NO_BINDING = {"project start", "project stop", "scene start", "scene stop"}


@dataclass
class SceneSymbols:
    vars: dict[str, Span] = field(default_factory=dict)
    funcs: dict[str, int] = field(default_factory=dict)


@dataclass
class Symbols:
    """Everything a program declares at project level."""

    connections: dict[str, Span] = field(default_factory=dict)
    servers: dict[str, Span] = field(default_factory=dict)
    globals: dict[str, Span] = field(default_factory=lambda: {"args": A.NOSPAN})
    funcs: dict[str, int] = field(default_factory=dict)
    scenes: dict[str, SceneSymbols] = field(default_factory=dict)
    # the script's own metrics (SPEC §12): name -> ("counter" | "trend", first use)
    metrics: dict[str, tuple[str, Span]] = field(default_factory=dict)


@dataclass
class _Body:
    """What a statement may do where it stands."""

    kind: str  # "func", "handler", "request", "timer", "init", "repl", "test"
    scene: SceneSymbols | None
    scopes: list[dict[str, Span]]
    loops: int = 0


class Checker(InstanceChecks, MetricChecks, TestChecks, FlowChecks, ClusterChecks):
    def __init__(self, builtins: dict[str, Any], symbols: Symbols | None = None,
                 repl: bool = False) -> None:
        self.builtins = builtins
        self.symbols = symbols if symbols is not None else Symbols()
        self.repl = repl
        self.diags: list[Diagnostic] = []
        self._repl_body: _Body | None = None
        self._func_spans: dict[str, Span] = {}
        self._scene_spans: dict[str, Span] = {}
        self._thresholds: list[A.Threshold] = []

    # ------------------------------------------------------------ entry points

    def check(self, decls: list[A.Node]) -> list[Diagnostic]:
        """Check declarations (and, in the REPL, statements). Returns the problems found."""
        self._declare_all(decls)
        # project variables first, in order: an initializer sees only the ones before it,
        # while configs and bodies (which run after all of them) see them all
        for d in decls:
            if isinstance(d, A.Let):
                self._checked(d)
        for d in decls:
            if not isinstance(d, A.Let):
                self._checked(d)
        # thresholds last: the script's metrics are made by the statements that name them
        thresholds, self._thresholds = self._thresholds, []
        for t in thresholds:
            self._threshold(t)
        self._cluster_end()
        self.diags.sort(key=lambda d: SOURCES.order_key(d.span))
        return self.diags

    def _checked(self, d: A.Node) -> None:
        try:
            self._decl(d)
        except RecursionError:
            self.error(getattr(d, "span", A.NOSPAN), _TOO_DEEP)

    def error(self, span: Span, message: str) -> None:
        self.diags.append(Diagnostic(span, message))

    # ------------------------------------------------------------ pass 1: declarations

    def _declare_all(self, decls: list[A.Node]) -> None:
        s = self.symbols
        for d in decls:
            if isinstance(d, A.Connection | A.Server):
                table = s.connections if isinstance(d, A.Connection) else s.servers
                self._unique_value(d.name, d.span)
                table[d.name] = d.span
            elif isinstance(d, A.Func):
                self._func_name(d, s.funcs, None)
                s.funcs[d.name] = len(d.params)
                self._func_spans.setdefault(d.name, d.span)
            elif isinstance(d, A.Scene):
                if d.name in s.scenes and not self.repl:
                    first = self._scene_spans[d.name]
                    self.error(d.span, f"scene '{d.name}' is already declared at line "
                                       f"{first.line}")
                self._scene_spans.setdefault(d.name, d.span)
                scene = s.scenes[d.name] = SceneSymbols()
                for item in d.items:
                    if isinstance(item, A.Func):
                        self._func_name(item, scene.funcs, scene)
                        scene.funcs[item.name] = len(item.params)

    def _unique_value(self, name: str, span: Span) -> None:
        if self.repl:
            return
        s = self.symbols
        for what, table in (("connection", s.connections), ("server", s.servers),
                            ("variable", s.globals)):
            if name in table:
                prev = table[name]
                where = f" at line {prev.line}" if prev.line else " (built in)"
                self.error(span, f"'{name}' is already declared as a {what}{where}")
                return

    def _func_name(self, d: A.Func, table: dict[str, int], scene: SceneSymbols | None) -> None:
        if d.name in self.builtins:
            self.error(d.span, f"'{d.name}' is a built-in function; choose another name")
        elif d.name in table and not self.repl:
            first = self._func_spans.get(d.name) if scene is None else None
            where = f" at line {first.line}" if first is not None else ""
            self.error(d.span, f"function '{d.name}' is already declared{where}")
        elif scene is not None and d.name in self.symbols.funcs:
            self.error(d.span, f"function '{d.name}' is already declared at project level")
        seen: set[str] = set()
        for p in d.params:
            if p in seen:
                self.error(d.span, f"parameter '{p}' appears twice in '{d.name}'")
            seen.add(p)

    # ------------------------------------------------------------ pass 2: bodies

    def _decl(self, d: A.Node) -> None:
        if isinstance(d, A.Import):
            return  # the loader follows imports before checking
        if isinstance(d, A.Connection):
            self._config("connection", d)
        elif isinstance(d, A.Server):
            self._config("server", d)
        elif isinstance(d, A.Let):
            self._project_let(d)
        elif isinstance(d, A.Func):
            self._func(d, None)
        elif isinstance(d, A.Handler):
            self._handler(d, None)
        elif isinstance(d, A.Timer):
            self._timer_body(d, _Body("timer", None, [{}]))
        elif isinstance(d, A.Scene):
            self._scene(d)
        elif isinstance(d, A.Test):
            self._test(d, _Body("test", None, [{}]))
        elif isinstance(d, A.Threshold):
            self._thresholds.append(d)
        elif isinstance(d, A.Cluster):
            self._cluster(d, _Body("init", None, [{}]))
        elif isinstance(d, A.Stmt):  # the REPL: one input's statements share one body
            if self._repl_body is None:
                self._repl_body = _Body("repl", None, [{}])
            self._stmt(d, self._repl_body)
        else:  # pragma: no cover - the parser makes nothing else
            raise TypeError(f"unexpected declaration {d!r}")

    def _project_let(self, d: A.Let) -> None:
        body = _Body("init", None, [{}])
        if isinstance(d.value, A.Timer):
            self.error(d.span, "a timer can be kept in a variable only inside a handler")
        else:
            self._expr(d.value, body)
        self._unique_value(d.name, d.span)
        self.symbols.globals[d.name] = d.span

    def _config(self, role: str, d: A.Connection | A.Server) -> None:
        keys = config.keys_for(role)
        seen: dict[str, Any] = {}  # key -> its literal value (NOT_LITERAL when not one)
        body = _Body("init", None, [{}])
        for item in d.items:
            if item.key not in keys:
                self.error(item.span, config.unknown_key_message(role, item.key))
                continue
            if item.key in seen:
                self.error(item.span, f"'{item.key}' is set twice in {role} '{d.name}'")
            seen[item.key] = value = literal_value(item.value)
            self._expr(item.value, body)
            if value is not NOT_LITERAL:
                problem = config.problem(role, item.key, value)
                if problem:
                    self.error(item.value.span, problem)
        required = config.REQUIRED[role]
        if required not in seen:
            self.error(d.span, f"{role} '{d.name}' needs '{required}'")
        for problem in config.tls_problems(role, d.name, seen):  # certfile, client_ca...
            self.error(d.span, problem)

    def _func(self, d: A.Func, scene: SceneSymbols | None) -> None:
        scope = dict.fromkeys(d.params, d.span)
        self._block(d.body, _Body("func", scene, [scope]))

    def _handler(self, d: A.Handler, scene: SceneSymbols | None) -> None:
        ev = d.event
        scope: dict[str, Span] = {}
        if ev.kind in _WS_EVENTS:
            assert ev.name is not None
            if ev.name not in self.symbols.connections and ev.name not in self.symbols.servers:
                self._unknown_endpoint(ev.name, ev.span)
        elif ev.kind in ("scene start", "scene stop"):
            if scene is None:
                self.error(d.span, f"'on {ev.kind}' works only inside a scene")
        elif ev.kind == "change":
            assert ev.name is not None
            visible = dict(self.symbols.globals)
            if scene is not None:
                visible.update(scene.vars)
            if ev.name not in visible:
                self.error(ev.span, f"'on change' needs a project or scene variable; "
                                    f"'{ev.name}' is not one{_did_you_mean(ev.name, visible)}")
        if ev.as_name is not None:
            if ev.kind in _NO_BINDING:
                self.error(ev.as_span, f"'on {ev.kind}' has no value to bind with 'as'")
            scope[ev.as_name] = ev.as_span
        if ev.from_name is not None:
            if ev.kind not in _WS_EVENTS:
                self.error(ev.from_span, f"'on {ev.kind}' has no peer: 'from' works only on "
                                         "websocket events")
            elif ev.from_name == ev.as_name:
                self.error(ev.from_span, f"'{ev.from_name}' is bound twice")
            scope[ev.from_name] = ev.from_span
        self._cluster_handler(ev)
        if ev.kind == "websocket request":
            self._request_handler(d, scope)  # SPEC §15: a server's, and `reject` may stand
        self._block(d.body, _Body("request" if ev.kind == "websocket request" else "handler",
                                  scene, [scope]))

    def _scene(self, d: A.Scene) -> None:
        scene = self.symbols.scenes[d.name]
        scene.vars.clear()
        for item in d.items:
            if isinstance(item, A.Let):
                body = _Body("init", scene, [{}])
                if isinstance(item.value, A.Timer):
                    self.error(item.span, "a timer can be kept in a variable only inside a handler")
                else:
                    self._expr(item.value, body)
                if item.name in scene.vars and not self.repl:
                    self.error(item.span, f"'{item.name}' is declared twice in scene '{d.name}'")
                scene.vars[item.name] = item.span
        for item in d.items:
            if isinstance(item, A.Func):
                self._func(item, scene)
            elif isinstance(item, A.Handler):
                self._handler(item, scene)
            elif isinstance(item, A.Timer):
                self._timer_body(item, _Body("timer", scene, [{}]))

    def _timer_body(self, t: A.Timer, body: _Body) -> None:
        self._expr(t.interval, body)
        self._block(t.body, body)

    # ------------------------------------------------------------ statements

    def _block(self, block: A.Block, body: _Body) -> None:
        body.scopes.append({})
        for s in block.stmts:
            try:
                self._stmt(s, body)
            except RecursionError:
                self.error(s.span, _TOO_DEEP)
        body.scopes.pop()

    def _declare_local(self, name: str, span: Span, body: _Body) -> None:
        scope = body.scopes[-1]
        if name in scope and body.kind != "repl" and not self.repl:
            self.error(span, f"'{name}' is already declared in this block; "
                             f"assign with '{name} = ...'")
        scope[name] = span

    def _stmt(self, s: A.Stmt, body: _Body) -> None:
        getattr(self, "_s_" + type(s).__name__)(s, body)

    def _s_Let(self, s: A.Let, body: _Body) -> None:
        if isinstance(s.value, A.Timer):
            self._declare_local(s.name, s.span, body)
            self._nested_timer(s.value, body)
            return
        self._expr(s.value, body)
        if body.kind == "repl" and len(body.scopes) == 1:
            self.symbols.globals[s.name] = s.span  # a REPL `let` makes a project variable
        self._declare_local(s.name, s.span, body)

    def _s_Assign(self, s: A.Assign, body: _Body) -> None:
        if isinstance(s.value, A.Timer):
            self._nested_timer(s.value, body)
        else:
            self._expr(s.value, body)
        t = s.target
        if isinstance(t, A.Name):
            kind = self._resolve(t.name, body)
            if kind is None:
                self.error(t.span, f"'{t.name}' is not declared; write 'let {t.name} = ...' "
                                   "to declare it" + _did_you_mean(t.name, self._visible(body)))
            elif kind in ("connection", "server"):
                self.error(t.span, f"cannot assign to {kind} '{t.name}'")
        elif isinstance(t, A.Index | A.Attr):
            self._expr(t, body)
        else:
            self.error(s.span, "cannot assign to this; the left of '=' must be a variable, "
                               "an element (xs[i], m[k]) or a field (m.k)")

    def _s_ExprStmt(self, s: A.ExprStmt, body: _Body) -> None:
        e = s.expr
        if isinstance(e, A.Name) and self._resolve(e.name, body) is None \
                and e.name not in self.symbols.funcs and e.name not in self.builtins:
            close = difflib.get_close_matches(e.name, _BARE_STATEMENTS, n=1, cutoff=0.7)
            if close:  # `brake`, `contnue`: a statement keyword misspelt
                self.error(e.span, f"unknown statement '{e.name}'; did you mean '{close[0]}'?")
                return
        self._expr(e, body)
        if not isinstance(s.expr, A.Call | A.Open | A.Ping) and body.kind != "repl" and not self.repl:
            self.error(s.span, "this expression's value is not used; did you mean 'print ...'?")

    def _s_If(self, s: A.If, body: _Body) -> None:
        self._expr(s.cond, body)
        self._block(s.then, body)
        if isinstance(s.orelse, A.Block):
            self._block(s.orelse, body)
        elif isinstance(s.orelse, A.If):
            self._s_If(s.orelse, body)

    def _s_While(self, s: A.While, body: _Body) -> None:
        self._expr(s.cond, body)
        body.loops += 1
        self._block(s.body, body)
        body.loops -= 1

    def _s_For(self, s: A.For, body: _Body) -> None:
        self._expr(s.iterable, body)
        if len(s.names) == 2 and s.names[0] == s.names[1]:
            self.error(s.span, f"'{s.names[0]}' is bound twice")
        body.loops += 1
        body.scopes.append(dict.fromkeys(s.names, s.span))
        self._block(s.body, body)
        body.scopes.pop()
        body.loops -= 1

    def _s_Break(self, s: A.Break, body: _Body) -> None:
        if not body.loops:
            self.error(s.span, "'break' outside a loop")

    def _s_Continue(self, s: A.Continue, body: _Body) -> None:
        if not body.loops:
            self.error(s.span, "'continue' outside a loop")

    def _s_Return(self, s: A.Return, body: _Body) -> None:
        if s.value is not None:
            self._expr(s.value, body)
            if body.kind != "func":
                self.error(s.span, "'return' with a value works only in a func; "
                                   "a bare 'return' ends a handler")

    def _s_Wait(self, s: A.Wait, body: _Body) -> None:
        self._expr(s.duration, body)

    def _s_Timer(self, s: A.Timer, body: _Body) -> None:
        self._nested_timer(s, body)

    def _nested_timer(self, t: A.Timer, body: _Body) -> None:
        """A timer started by a statement: its block runs later, as its own body, with a copy
        of the enclosing locals."""
        self._expr(t.interval, body)
        inner = _Body("timer", body.scene, [dict(x) for x in body.scopes])
        self._block(t.body, inner)

    def _s_Start(self, s: A.Start, body: _Body) -> None:
        self._target(s.target, body, "start")

    def _s_Stop(self, s: A.Stop, body: _Body) -> None:
        self._target(s.target, body, "stop")

    def _s_Send(self, s: A.Send, body: _Body) -> None:
        self._target(s.target, body, "send")
        self._expr(s.value, body)

    def _s_Close(self, s: A.Close, body: _Body) -> None:
        self._target(s.target, body, "close")
        if s.code is not None:
            self._expr(s.code, body)
            code = literal_value(s.code)
            if code is not NOT_LITERAL and not valid_close_code(code):
                self.error(s.code.span, f"{code!r} is not a close code a script may send "
                                        f"({SENDABLE})")
        if s.reason is not None:
            self._expr(s.reason, body)

    def _s_Expect(self, s: A.Expect, body: _Body) -> None:
        self._target(s.target, body, "expect")
        if s.within is not None:
            self._expr(s.within, body)
        body.scopes.append({s.name: s.span})
        if s.where is not None:
            self._expr(s.where, body)
        if s.orelse is not None:
            self._block(s.orelse, body)
        body.scopes.pop()
        if body.kind == "repl" and len(body.scopes) == 1:
            self.symbols.globals[s.name] = s.span  # at the prompt: a project variable
        self._declare_local(s.name, s.span, body)

    def _s_Emit(self, s: A.Emit, body: _Body) -> None:
        if s.value is not None:
            self._expr(s.value, body)

    def _s_ChangeScene(self, s: A.ChangeScene, body: _Body) -> None:
        if s.name not in self.symbols.scenes:
            self.error(s.span, f"unknown scene '{s.name}'"
                               + _did_you_mean(s.name, self.symbols.scenes))

    def _s_Print(self, s: A.Print, body: _Body) -> None:
        for v in s.values:
            self._expr(v, body)

    def _s_Assert(self, s: A.Assert, body: _Body) -> None:
        self._expr(s.cond, body)
        if s.message is not None:
            self._expr(s.message, body)

    def _target(self, t: A.Expr, body: _Body, verb: str) -> None:
        if not isinstance(t, A.Name):
            self._expr(t, body)
            return
        kind = self._resolve(t.name, body)
        if kind is None:
            self._unknown_endpoint(t.name, t.span, body)
        elif verb == "broadcast" and kind == "connection":
            self.error(t.span, f"'broadcast' needs a server; '{t.name}' is a connection "
                               f"(use 'send {t.name} ...')")
        elif verb in ("send", "expect") and kind == "server":
            use = "'broadcast', or the peer bound by 'from'" if verb == "send" \
                else "the peer bound by 'from', as in 'on websocket start NAME from p'"
            self.error(t.span, f"'{verb}' needs a connection or a peer; '{t.name}' is a server "
                               f"(use {use})")
        elif verb in ("start", "stop") and kind not in ("connection", "server", "variable"):
            self.error(t.span, f"'{verb}' needs a connection or a server")

    def _unknown_endpoint(self, name: str, span: Span, body: _Body | None = None) -> None:
        names = dict(self.symbols.connections)
        names.update(self.symbols.servers)
        if body is not None:
            names.update(self._visible(body))
        self.error(span, f"unknown connection or server '{name}'" + _did_you_mean(name, names))

    # ------------------------------------------------------------ expressions

    def _resolve(self, name: str, body: _Body) -> str | None:
        for scope in reversed(body.scopes):
            if name in scope:
                return "variable"
        if body.scene is not None and name in body.scene.vars:
            return "variable"
        if name in self.symbols.globals:
            return "variable"
        if name in self.symbols.connections:
            return "connection"
        if name in self.symbols.servers:
            return "server"
        return None

    def _visible(self, body: _Body) -> dict[str, Any]:
        names: dict[str, Any] = {}
        for scope in body.scopes:
            names.update(scope)
        if body.scene is not None:
            names.update(body.scene.vars)
        names.update(self.symbols.globals)
        return names

    def _expr(self, e: A.Expr, body: _Body) -> None:
        if isinstance(e, A.Const):
            return
        if isinstance(e, A.Name):
            if self._resolve(e.name, body) is None:
                visible = self._visible(body)
                visible.update(self.symbols.connections)
                visible.update(self.symbols.servers)
                hint = _did_you_mean(e.name, visible)
                if not hint and (e.name in self.symbols.funcs or e.name in self.builtins):
                    hint = f"; '{e.name}' is a function: call it with '{e.name}(...)'"
                self.error(e.span, f"unknown name '{e.name}'{hint}")
        elif isinstance(e, A.Call):
            self._call(e, body)
        elif isinstance(e, A.Open | A.Ping):
            self._instance_expr(e, body)
        elif isinstance(e, A.Binary | A.Logic):
            self._expr(e.left, body)
            self._expr(e.right, body)
        elif isinstance(e, A.Unary):
            self._expr(e.operand, body)
        elif isinstance(e, A.Index):
            self._expr(e.obj, body)
            self._expr(e.index, body)
        elif isinstance(e, A.Attr):
            self._expr(e.obj, body)
        elif isinstance(e, A.ListLit):
            for x in e.items:
                self._expr(x, body)
        elif isinstance(e, A.MapLit):
            for x in e.values:
                self._expr(x, body)
        elif isinstance(e, A.Interp):
            for part in e.parts:
                if not isinstance(part, str):
                    self._expr(part, body)
        else:  # pragma: no cover
            raise TypeError(f"unexpected expression {e!r}")

    def _call(self, e: A.Call, body: _Body) -> None:
        for a in e.args:
            self._expr(a, body)
        n = len(e.args)
        if body.scene is not None and e.name in body.scene.funcs:
            self._arity(e, body.scene.funcs[e.name], body.scene.funcs[e.name])
        elif e.name in self.symbols.funcs:
            self._arity(e, self.symbols.funcs[e.name], self.symbols.funcs[e.name])
        elif e.name in self.builtins:
            b = self.builtins[e.name]
            if n < b.min_args or (b.max_args is not None and n > b.max_args):
                self.error(e.span, f"{e.name}() takes {b.arity_text()} argument"
                                   f"{'' if b.arity_text() in ('1', 'at least 1') else 's'} "
                                   f"({e.name}({b.params})), got {n}")
        else:
            names: dict[str, Any] = dict(self.symbols.funcs)
            names.update(self.builtins)
            if body.scene is not None:
                names.update(body.scene.funcs)
            hint = _did_you_mean(e.name, names) or self._skip_hint(e.name)
            if not hint and self._resolve(e.name, body) is not None:
                hint = f"; '{e.name}' is a variable, not a function"
            self.error(e.span, f"unknown function '{e.name}'{hint}")

    def _arity(self, e: A.Call, lo: int, hi: int) -> None:
        n = len(e.args)
        if n != lo:
            self.error(e.span, f"{e.name}() takes {lo} argument{'' if lo == 1 else 's'}, got {n}")


# ---------------------------------------------------------------- helpers

_TOO_DEEP = "this is nested too deeply to check (a chain of thousands of operators?); split it up"

# the statements that can be one word
_BARE_STATEMENTS = ["break", "continue", "return", "exit", "print"]


def _did_you_mean(name: str, names: Any) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check(decls: list[A.Node], builtins: dict[str, Any]) -> list[Diagnostic]:
    """Check a whole program (imports already followed)."""
    return Checker(builtins).check(decls)
