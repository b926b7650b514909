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
    """A server's "host:port" while it listens; a connection's peer address while open:
    the address it connected to (`127.0.0.1:8765` for `ws://localhost:8765/`; IPv6 as
    `[::1]:8765`, as is `p.remote`)."""
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


@builtin("websocket", context=True)
def metric(rt: Any, name: Any, stat: Any, tag: Any = None) -> Any:
    """A metric now (SPEC §12): STAT is one of count rate avg min med max p90 p95 p99; TAG a
    connection's or server's name, or the connection itself (the built-in metrics are kept per
    declaration). null for
    an unknown metric, stat or tag, for a trend without samples, and with --no-metrics."""
    name = args.string("metric", 1, "name", name)
    stat = args.string("metric", 2, "stat", stat)
    if getattr(tag, "evt_type", None) in ("connection", "server", "peer"):
        tag = getattr(tag, "endpoint", tag).name  # a handle or a peer: its declaration's
    elif tag is not None:
        tag = args.string("metric", 3, "tag", tag)
    registry = rt.metrics
    return None if registry is None else registry.read(name, stat, tag)


@builtin("websocket")
def rooms(peer: Any) -> list:
    """The rooms a peer is in, in the order it joined them; [] once it closed (§4f)."""
    return _endpoint("rooms", "peer", peer, ("peer",), "a peer").evt_rooms()


@builtin("websocket")
def cluster_peers(server: Any) -> int:
    """The open peers of a server in every process of the cluster: this process's exactly,
    the others' as they last reported (§4f); without a cluster, `len(peers(server))`."""
    return _endpoint("cluster_peers", "server", server, ("server",), "a server"
                     ).evt_cluster_peers()
