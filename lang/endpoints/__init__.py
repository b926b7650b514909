"""Endpoints: what a `connection` or `server` declaration is at run time.

- channel: Endpoint (a declaration's runtime side) and Channel (one WebSocket to send and
  receive on, with what `expect` can look back on); how values go on the wire and come back
- client: a `connection`: connecting, reconnecting, its one channel
- server: a `server` and its peers (one channel each)
"""

from __future__ import annotations

from lang import ast as A
from lang.endpoints.channel import Endpoint
from lang.endpoints.client import ClientEndpoint
from lang.endpoints.server import ServerEndpoint
from lang.runtime.host import EndpointHost


def make_endpoint(rt: EndpointHost, decl: A.Connection | A.Server) -> Endpoint:
    if isinstance(decl, A.Connection):
        return ClientEndpoint(rt, decl)
    return ServerEndpoint(rt, decl)
