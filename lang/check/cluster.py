"""Static checks of SPEC §16's rooms and cluster bus: `cluster { }` (at most one, its keys),
`join`/`leave` (a peer and a room name), `broadcast ... to ROOM`, `publish` (a topic and a
JSON value) and `on cluster error` (only with a cluster). A mixin of the Checker (it uses its
error, _expr, _target and _resolve)."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang import config
from lang.check.literals import NOT_LITERAL, literal_value
from lang.values import type_name


class ClusterChecks:
    error: Any
    repl: bool
    _expr: Any
    _target: Any
    _resolve: Any
    _cluster_span: A.Span | None = None
    _cluster_error_spans: list[A.Span] | None = None

    def _cluster(self, d: A.Cluster, body: Any) -> None:
        if self._cluster_span is not None:
            self.error(d.span, f"a program joins at most one cluster: one is already declared "
                               f"at {self._cluster_span}")
        else:
            self._cluster_span = d.span
        keys = config.keys_for("cluster")
        seen: set[str] = set()
        for item in d.items:
            if item.key not in keys:
                self.error(item.span, config.unknown_key_message("cluster", item.key))
                continue
            if item.key in seen:
                self.error(item.span, f"'{item.key}' is set twice in the cluster")
            seen.add(item.key)
            self._expr(item.value, body)
            value = literal_value(item.value)
            if value is not NOT_LITERAL:
                problem = config.problem("cluster", item.key, value)
                if problem:
                    self.error(item.value.span, problem)
        if "url" not in seen:
            self.error(d.span, "the cluster needs 'url' (for example "
                               "url = \"redis://127.0.0.1:6379/0\")")

    def _cluster_handler(self, ev: A.Event) -> None:
        if ev.kind == "cluster error":
            if self._cluster_error_spans is None:
                self._cluster_error_spans = []
            self._cluster_error_spans.append(ev.span)

    def _cluster_end(self) -> None:
        """After every declaration: `on cluster error` needs a cluster to hear from."""
        if self._cluster_span is None and not self.repl:
            for span in self._cluster_error_spans or ():
                self.error(span, "'on cluster error' but the program declares no cluster "
                                 "(cluster { url = \"redis://...\" })")
        self._cluster_error_spans = None

    def _room_stmt(self, s: A.Join | A.Leave, body: Any, verb: str) -> None:
        t = s.target
        if isinstance(t, A.Name) and self._resolve(t.name, body) in ("connection", "server"):
            self.error(t.span, f"'{verb}' needs a peer (the one bound by 'from'); "
                               f"'{t.name}' is a {self._resolve(t.name, body)}")
        else:
            self._expr(t, body)
        self._room_name(s.room, body, verb)

    def _room_name(self, e: A.Expr, body: Any, verb: str) -> None:
        self._expr(e, body)
        value = literal_value(e)
        if value is not NOT_LITERAL and (type(value) is not str or not value):
            self.error(e.span, f"{verb}: a room is a non-empty string, got "
                               f"{type_name(value) if type(value) is not str else 'an empty one'}")

    def _s_Join(self, s: A.Join, body: Any) -> None:
        self._room_stmt(s, body, "join")

    def _s_Leave(self, s: A.Leave, body: Any) -> None:
        self._room_stmt(s, body, "leave")

    def _s_Broadcast(self, s: A.Broadcast, body: Any) -> None:
        self._target(s.target, body, "broadcast")
        self._expr(s.value, body)
        if s.room is not None:
            self._room_name(s.room, body, "broadcast ... to")
        if s.except_ is not None:
            self._expr(s.except_, body)

    def _s_Publish(self, s: A.Publish, body: Any) -> None:
        self._expr(s.topic, body)
        self._expr(s.value, body)
        topic = literal_value(s.topic)
        if topic is not NOT_LITERAL and (type(topic) is not str or not topic):
            self.error(s.topic.span, "publish: a topic is a non-empty string")
        value = literal_value(s.value)
        if type(value) is bytes:
            self.error(s.value.span, "publish takes a JSON value; bytes are not one (publish "
                                     "base64(...) instead)")

