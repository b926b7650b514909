"""websocket family: what a script can ask of its connections, servers and peers.

The objects come from lang.endpoints; these functions only read them. Peer fields (`id remote path
query headers subprotocol` and any field the script assigns) are read with `p.field`.
"""

from __future__ import annotations

from typing import Any

from stdlib import args
from stdlib.registry import builtin


def _endpoint(fn: str, param: str, v: Any, kinds: tuple[str, ...], wanted: str) -> Any:
    if getattr(v, "evt_type", None) not in kinds:
        raise args.fail(fn, 1, param, wanted, v)
    return v


@builtin("websocket")
def connected(conn: Any) -> bool:
    """true while a connection (or a peer) is open."""
    return _endpoint("connected", "conn", conn, ("connection", "peer"), "a connection or a peer"
                     ).evt_connected()


@builtin("websocket")
def subprotocol(conn: Any) -> Any:
    """The subprotocol the handshake chose, or null."""
    return _endpoint("subprotocol", "conn", conn, ("connection", "peer"), "a connection or a peer"
                     ).evt_subprotocol()


@builtin("websocket")
def address(endpoint: Any) -> Any:
    """A server's "host:port" while it listens; a connection's peer address while open."""
    return _endpoint("address", "endpoint", endpoint, ("server", "connection", "peer"),
                     "a server, a connection or a peer").evt_address()


@builtin("websocket")
def connections(conn: Any) -> list:
    """The connections of a declaration that are open or will connect (the started one
    and every `open`ed one), in the order they began; given a handle, its declaration's."""
    return _endpoint("connections", "conn", conn, ("connection",), "a connection"
                     ).endpoint.evt_connections()


@builtin("websocket")
def peers(server: Any) -> list:
    """The open peers of a server, as a list."""
    return _endpoint("peers", "server", server, ("server",), "a server").evt_peers()
