"""The language side of WebSocket: `connection` and `server` declarations as running objects.

Rules of this module:
- An endpoint's configuration is compiled with the program and evaluated once at start,
  after the project variables, then judged against lang.config.
- This module turns evt statements and events into transport calls; it never touches a
  socket itself (that is lang.transport), and the transport never sees an evt value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ast as A
from . import config
from .compiler import Layout, Scope
from .errors import EvtRuntimeError

if TYPE_CHECKING:
    from .compiler import Compiler
    from .interpreter import Runtime


class Endpoint:
    """What a `connection` or `server` declaration names."""

    role = ""
    evt_type = ""

    def __init__(self, rt: Runtime, decl: A.Connection | A.Server) -> None:
        self.rt = rt
        self.name = decl.name
        self.label = decl.name
        self.decl = decl
        self.span = decl.span
        self.config: dict[str, Any] = {k: v.default for k, v in config.keys_for(self.role).items()}
        self._items: list[tuple[str, Any, A.Span]] = []

    def __repr__(self) -> str:
        return f"<{self.evt_type} {self.name}>"

    def __str__(self) -> str:
        return repr(self)

    def compile_config(self, compiler: Compiler) -> None:
        self._items = [(item.key, compiler.expr_in(item.value, Scope(Layout(), None, "init",
                                                                      self.name)),
                        item.value.span) for item in self.decl.items]

    async def evaluate_config(self, fr: list) -> None:
        for key, (fn, is_async), span in self._items:
            value = (await fn(fr)) if is_async else fn(fr)
            problem = config.problem(self.role, key, value)
            if problem:
                raise EvtRuntimeError(f"{self.role} {self.name}: {problem}", span)
            self.config[key] = value

    async def shutdown(self) -> None:
        """Program end: close with 1001 (going away) and a close handshake."""


class ClientEndpoint(Endpoint):
    role = "connection"
    evt_type = "connection"


class ServerEndpoint(Endpoint):
    role = "server"
    evt_type = "server"


def make_endpoint(rt: Runtime, decl: A.Connection | A.Server) -> Endpoint:
    if isinstance(decl, A.Connection):
        return ClientEndpoint(rt, decl)
    return ServerEndpoint(rt, decl)
