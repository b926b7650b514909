"""Static checks of SPEC §11's `open NAME [with MAP]`: a mixin of the Checker (it uses its
symbols, error and _expr). What a literal map says is judged here; a computed
one is judged when it is evaluated (lang.endpoints.client)."""

from __future__ import annotations

import difflib
from typing import Any

from lang import ast as A
from lang import config
from lang.check.literals import NOT_LITERAL, literal_value


class InstanceChecks:
    """`open`: of a connection declaration, with keys that exist and values that fit."""

    symbols: Any
    error: Any
    _expr: Any

    _target: Any

    def _instance_expr(self, e: A.Open | A.Ping, body: Any) -> None:
        if isinstance(e, A.Ping):
            self._target(e.target, body, "ping")  # a connection, a handle or a peer
        else:
            self._open(e, body)

    def _open(self, e: A.Open, body: Any) -> None:
        s = self.symbols
        if e.name not in s.connections:
            if e.name in s.servers:
                self.error(e.name_span, f"'open' needs a connection; '{e.name}' is a server")
            else:
                close = difflib.get_close_matches(e.name, list(s.connections), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.error(e.name_span, f"unknown connection '{e.name}'{hint}")
        if e.overrides is None:
            return
        self._expr(e.overrides, body)
        m = e.overrides
        if (isinstance(m, A.Const) and m.value is not None) or isinstance(m, A.ListLit):
            self.error(m.span, "'open ... with' needs a map of connection keys")
            return
        if not isinstance(m, A.MapLit):
            return  # computed: judged when the open runs
        keys = config.keys_for("connection")
        for key, value in zip(m.keys, m.values, strict=True):
            key = str(key)
            if key not in keys:
                self.error(value.span, config.unknown_key_message("connection", key))
                continue
            literal = literal_value(value)
            if literal is not NOT_LITERAL:
                problem = config.problem("connection", key, literal)
                if problem:
                    self.error(value.span, problem)
