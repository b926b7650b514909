"""Static checks of a few statements that end or steer a body (`wait until`, `exit`,
`cancel`, SPEC §15's `reject`) and of the `on websocket request` handler: a mixin of the
Checker (it uses its symbols, error, _block and _expr)."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.check.literals import NOT_LITERAL, literal_value


class FlowChecks:
    symbols: Any
    error: Any
    _block: Any
    _expr: Any

    def _s_WaitUntil(self, s: A.WaitUntil, body: Any) -> None:
        self._expr(s.cond, body)
        if s.within is not None:
            self._expr(s.within, body)
        if s.orelse is not None:
            self._block(s.orelse, body)

    def _s_Exit(self, s: A.Exit, body: Any) -> None:
        if s.code is not None:
            self._expr(s.code, body)
            code = literal_value(s.code)
            if code is not NOT_LITERAL and (type(code) is not int or not 0 <= code <= 255):
                self.error(s.code.span, "an exit code must be an int from 0 to 255")

    def _s_Cancel(self, s: A.Cancel, body: Any) -> None:
        self._expr(s.timer, body)

    def _request_handler(self, d: A.Handler, scope: dict[str, Any]) -> None:
        """`on websocket request NAME as R`: NAME is a server; no `from` (no peer yet)."""
        ev = d.event
        if ev.name in self.symbols.connections:
            self.error(ev.span, f"'on websocket request' works only on a server; '{ev.name}' "
                                "is a connection")
        if ev.from_name is not None:
            self.error(ev.from_span, "'on websocket request' has no peer yet: bind the request "
                                     "with 'as R' (R.remote, R.headers ...)")

    def _s_Reject(self, s: A.Reject, body: Any) -> None:
        self._expr(s.status, body)
        if s.body is not None:
            self._expr(s.body, body)
        if body.kind != "request":
            self.error(s.span, "'reject' works only in an 'on websocket request' handler")
        status = literal_value(s.status)
        if status is not NOT_LITERAL and (type(status) is not int or not 400 <= status <= 599):
            self.error(s.status.span, "reject takes an HTTP status from 400 to 599")
