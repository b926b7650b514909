"""SPEC §16's cluster as the program sees it: what the bus's envelopes mean (a server's
broadcast, to a room or not; a published value), the events they become (`on message`,
`on cluster error`) and the counts `cluster_peers` reads. The bus itself (lang.cluster.bus)
knows nothing of the language.

Envelopes, as `redis-cli subscribe` shows them:
  {"kind":"broadcast","server":"chat","room":"lobby","except":"ORIGIN/7","binary":false,
   "payload":"hi","origin":"ORIGIN"}
  {"kind":"publish","topic":"scores","payload":{"a":1},"origin":"ORIGIN"}
A binary message's payload is its base64. The channels: PREFIX:server:NAME,
PREFIX:room:NAME:ROOM, PREFIX:topic:TOPIC.
"""

from __future__ import annotations

import base64
from typing import Any

from lang import ast as A
from lang import config
from lang.cluster.bus import Bus, BusOptions, safe_url
from lang.errors import EvtRuntimeError
from lang.runtime.sources import Source
from lang.values import parse_json, to_json, type_name

FLUSH_AT_END = 1.0  # seconds the outbox gets to be sent when the program ends


class ClusterLink:
    """The running program's side of the bus (one per process, made when the script
    declares a `cluster`)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.decl: A.Cluster | None = None  # set when the program declares a cluster
        self.source = Source(rt)  # `on message` and `on cluster error`, in arrival order
        self.bus: Bus | None = None
        self.url = ""
        self._items: list[tuple[str, Any, A.Span]] = []

    def install(self, decl: A.Cluster, compiler: Any) -> None:
        from lang.compile.support import Layout, Scope

        self.decl = decl
        self._items = [(item.key, compiler.expr_in(item.value, Scope(Layout(), None, "init",
                                                                      "cluster")),
                        item.value.span) for item in self.decl.items]

    async def _options(self) -> BusOptions:
        from lang.runtime.core import Inv

        assert self.decl is not None
        fr: list[Any] = [None] * 64
        fr[0] = Inv(self.rt, "the configuration of the cluster", self.decl.span)
        values = config.defaults("cluster")
        for key, (fn, is_async), span in self._items:
            value = (await fn(fr)) if is_async else fn(fr)
            problem = config.problem("cluster", key, value)
            if problem:
                raise EvtRuntimeError(f"cluster: {problem}", span)
            values[key] = config.value_for("cluster", key, value)
        return BusOptions(values["url"], values["prefix"], float(values["presence_ttl"]),
                          float(values["connect_timeout"]))

    async def start(self, tg: Any) -> bool:
        """Join the cluster before `on project start`: subscribed to every server's channel
        and every topic a handler listens to. False when the configuration is wrong (a
        runtime error, reported); an unreachable bus is an error event, and the program
        goes on (local delivery) while the bus is retried. Without a cluster: nothing."""
        if self.decl is None:
            return True
        try:
            opts = await self._options()
        except EvtRuntimeError as e:
            self.rt.failure(e, "the cluster", e.span)
            return False
        self.url = safe_url(opts.url)
        bus = self.bus = Bus(opts, self._deliver, self._bus_error, self._bus_up)
        metrics = self.rt.metrics
        if metrics is not None:
            bus.count = metrics.count
            for name in ("cluster_published", "cluster_received", "cluster_unpublished"):
                metrics.count(name, 0)  # there from the start, at 0
        bus.counts = self._counts
        bus.on_presence = self.rt.event_passed  # `wait until cluster_peers(S) ...` judges again
        for name, ep in self.rt.endpoints.items():
            if ep.role == "server":
                bus.wanted[bus.channel("server", name)] = None
        for topic in self._topics():
            bus.wanted[bus.channel("topic", topic)] = None
        await tg.start(bus.run)
        if self.rt.verbose:
            state = "joined" if bus.up else "not reachable yet:"
            self.rt.log(f"cluster: {state} {self.url} as {bus.origin} "
                        f"({len(bus.wanted)} channels)")
        return True

    def _topics(self) -> list[str]:
        keys = list(self.rt.handlers)
        for scene in self.rt.scenes.values():
            keys.extend(scene.handlers)
        return sorted({k[1] for k in keys if k[0] == "message"})

    def _counts(self) -> dict[str, int]:
        return {name: len(ep.evt_peers()) for name, ep in self.rt.endpoints.items()
                if ep.role == "server"}

    async def finish(self) -> None:
        """At the program's end: what is waiting is sent (for at most FLUSH_AT_END), our
        presence is withdrawn, and what could not be published is reported."""
        bus = self.bus
        if bus is None:
            return
        await bus.flush(FLUSH_AT_END)
        await bus.close()
        if bus.unpublished:
            self.rt.diag(f"evt: cluster: {bus.unpublished} message"
                         f"{'s' if bus.unpublished != 1 else ''} could not be published to "
                         f"{self.url} during this run (the bus was unreachable)")

    # ------------------------------------------------------------ from the bus

    def _deliver(self, channel: str, env: dict) -> None:
        try:
            self._take(env)
        except Exception:  # a bug of ours: reported, and the bus reads on
            self.rt.internal_error("the cluster's delivery")

    def _take(self, env: dict) -> None:
        rt = self.rt
        kind = env.get("kind")
        if kind == "broadcast":
            ep = rt.endpoints.get(env.get("server"))
            payload = env.get("payload")
            if ep is None or ep.role != "server" or type(payload) is not str:
                return
            if env.get("binary") is True:
                try:
                    data: str | bytes = base64.b64decode(payload, validate=True)
                except ValueError:
                    return
            else:
                try:
                    payload.encode("utf-8")  # a lone surrogate (JSON "\\ud800") is no text
                except UnicodeEncodeError:
                    return
                data = payload
            room = env.get("room")
            ep.deliver(data, room if type(room) is str else None, None)
        elif kind == "publish":
            topic = env.get("topic")
            if type(topic) is str:
                try:  # evt's own JSON rules (no lone surrogates, bounded nesting)
                    value = parse_json(to_json(env.get("payload")))
                except (EvtRuntimeError, ValueError, RecursionError):
                    return
                self._post_message(topic, value)

    def _post_message(self, topic: str, value: Any) -> None:
        rt = self.rt
        key = ("message", topic)
        if rt.has_handlers(key):
            self.source.post(lambda: rt.dispatch(key, value))

    def _bus_error(self, text: str) -> None:
        rt = self.rt
        if rt.shutting_down:
            return
        key = ("cluster error",)
        if rt.has_handlers(key):
            self.source.post(lambda: rt.dispatch(key, text))
        else:
            span = self.decl.span if self.decl is not None else "evt"
            rt.unhandled_ws_error(f"{span}: cluster error: {text}")

    def _bus_up(self, lost: int) -> None:
        what = (f"; {lost} message{'s' if lost != 1 else ''} could not be published while it "
                f"was down" if lost else "")
        self.rt.diag(f"evt: cluster: the bus at {self.url} is back{what}")

    # ------------------------------------------------------------ to the bus

    def broadcast(self, server: str, room: str | None, except_: Any, data: str | bytes) -> None:
        bus = self.bus
        if bus is None:
            return
        binary = type(data) is bytes
        env = {"kind": "broadcast", "server": server, "room": room,
               "except": f"{bus.origin}/{except_.id}" if except_ is not None else None,
               "binary": binary,
               "payload": base64.b64encode(data).decode("ascii") if binary else data}
        bus.publish(bus.channel("room", server, room) if room is not None
                    else bus.channel("server", server), env)

    async def publish(self, topic: Any, value: Any, span: A.Span) -> None:
        """`publish TOPIC VALUE`: this process's handlers get the value as every other
        process does, after a JSON round trip."""
        if type(topic) is not str:
            raise EvtRuntimeError(f"publish needs a topic string, got {type_name(topic)}", span)
        if type(value) is bytes:
            raise EvtRuntimeError("publish takes a JSON value; bytes are not one (send them "
                                  "as base64(...))", span)
        try:
            text = to_json(value)
        except EvtRuntimeError as e:
            e.span = span
            raise
        self._post_message(topic, parse_json(text))
        bus = self.bus
        if bus is not None:
            bus.publish(bus.channel("topic", topic), {"kind": "publish", "topic": topic,
                                                     "payload": parse_json(text)})

    async def room_joined(self, server: str, room: str) -> None:
        if self.bus is not None:
            await self.bus.subscribe(self.bus.channel("room", server, room))

    async def room_left(self, server: str, room: str) -> None:
        if self.bus is not None:
            await self.bus.unsubscribe(self.bus.channel("room", server, room))

    def peers_elsewhere(self, server: str) -> int:
        return self.bus.others(server) if self.bus is not None else 0
