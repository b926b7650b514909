"""Rule callbacks for SPEC §16's rooms and cluster bus (`cluster { }`, `join`, `leave`,
`publish`, `broadcast ... to ROOM`, `on message`, `on cluster error`): a mixin of
transform.ToAst, as instances.py is. Like ToAst, it only changes shape."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.errors import AtToken


class ClusterSyntax:
    """Uses ToAst's _sp, _string and _event."""

    _sp: Any
    _string: Any
    _event: Any

    def cluster_decl(self, c: list) -> A.Cluster:
        return A.Cluster(c[1], span=self._sp(c[0]))

    def join_stmt(self, c: list) -> A.Join:
        return A.Join(c[1], c[2], span=self._sp(c[0]))

    def leave_stmt(self, c: list) -> A.Leave:
        return A.Leave(c[1], c[2], span=self._sp(c[0]))

    def publish_stmt(self, c: list) -> A.Publish:
        tok = c[1]
        topic = self._string(tok) if tok.type == "STRING" else A.Name(tok.value,
                                                                       span=self._sp(tok))
        return A.Publish(topic, c[2], span=self._sp(c[0]))

    def ev_message(self, c: list) -> A.Event:
        topic = self._string(c[1])
        if not isinstance(topic, A.Const):
            raise AtToken(c[1], "the topic of 'on message' is fixed: it cannot use '${...}'")
        ev = self._event("message", c[0], None, None, c[2])
        return A.Event("message", topic.value, None, ev.as_name, ev.from_name,
                       span=self._sp(c[1]), as_span=ev.as_span, from_span=ev.from_span)

    def ev_cluster_error(self, c: list) -> A.Event:
        return self._event("cluster error", c[0], None, None, c[2])
