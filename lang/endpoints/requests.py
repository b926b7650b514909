"""`on websocket request NAME as R` (SPEC §15): a server's handlers of an upgrade request,
run in the client's handshake before it is answered (within handshake_timeout).

R's fields: `path`, `query` (a map), `headers` (lower-case names), `remote`,
`subprotocols` (offered), `cert` (the client certificate's subject, as p.cert); set by the
handler: `subprotocol` (one of the offered), `response_headers` (a map added to the 101),
and any other field, which the peer has once it
connects (`R.user = "ana"` gives `p.user`). `reject STATUS [, BODY]` answers with that HTTP
status and ends the connection; a runtime error in a handler answers 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from lang import ast as A
from lang.errors import EvtRuntimeError
from lang.runtime.core import RejectRequest
from lang.values import type_name
from lang.wire.server import Decision, Upgrade, header_items

_GIVEN = ("path", "query", "headers", "remote", "subprotocols", "cert")


class RequestValue:
    """The R of `on websocket request ... as R`."""

    evt_type = "request"
    __slots__ = ("cert", "failed", "fields", "rejection", "response_headers", "subprotocol",
                 "upgrade")

    def __init__(self, upgrade: Upgrade, cert: Any = None) -> None:
        self.upgrade = upgrade
        self.cert = cert  # the client certificate's subject (SPEC §15's p.cert), or null
        self.fields: dict[str, Any] = {}
        self.subprotocol: str | None = None
        self.response_headers: dict[str, str] = {}
        self.rejection: tuple[int, str] | None = None
        self.failed = False

    def __repr__(self) -> str:
        return f"<request {self.upgrade.path} from {self.upgrade.remote}>"

    def evt_get(self, name: str, span: A.Span) -> Any:
        u = self.upgrade
        if name == "path":
            return u.path
        if name == "query":
            return dict(parse_qsl(u.query, keep_blank_values=True))
        if name == "headers":
            return header_items(u.headers)
        if name == "remote":
            return u.remote
        if name == "subprotocols":
            return list(u.subprotocols)
        if name == "cert":
            return self.cert
        if name == "subprotocol":
            return self.subprotocol
        if name == "response_headers":
            return dict(self.response_headers)
        return self.fields.get(name)

    def evt_set(self, name: str, value: Any, span: A.Span) -> None:
        if name in _GIVEN:
            raise EvtRuntimeError(f"a request's '{name}' is read-only", span)
        if name == "subprotocol":
            if value is not None and value not in self.upgrade.subprotocols:
                offered = ", ".join(self.upgrade.subprotocols) or "none"
                raise EvtRuntimeError(f"R.subprotocol must be one the client offered "
                                      f"({offered}), got {value!r}", span)
            self.subprotocol = value
        elif name == "response_headers":
            if type(value) is not dict or not all(type(v) is str for v in value.values()):
                raise EvtRuntimeError("R.response_headers must be a map of strings, got "
                                      f"{type_name(value)}", span)
            self.response_headers = {str(k): v for k, v in value.items()}
        else:
            self.fields[name] = value

    def ended_by(self, e: Exception) -> bool:
        """A handler of this request ended with `e`: True when that was its `reject` (nothing
        to report); otherwise the request failed (500) and `e` is reported as usual."""
        if isinstance(e, RejectRequest):
            if self.rejection is None:
                self.rejection = (e.status, e.body)
            return True
        self.failed = True
        return False

    def decision(self) -> Decision:
        if self.rejection is not None:
            return Decision(reject=self.rejection)
        if self.failed:
            return Decision(reject=(500, "the server's request handler failed"))
        return Decision(subprotocol=self.subprotocol,
                        headers=list(self.response_headers.items()))


def decider(rt: Any, name: str, carried: dict[str, Any], cert: Callable[[], Any] | None = None
            ) -> Callable[[Upgrade], Awaitable[Decision]] | None:
    """The `decide` hook of a server's handshake: its request handlers, or None when it has
    none. What the handlers set on R is put in `carried` (for the peer); `cert` gives the
    client certificate's subject (a TLS server's)."""
    key = ("ws", "request", name)
    if not rt.has_handlers(key):
        return None

    async def decide(upgrade: Upgrade) -> Decision:
        request = RequestValue(upgrade, cert() if cert is not None else None)
        await rt.dispatch(key, request)
        carried.update(request.fields)
        return request.decision()
    return decide
