"""What the network statements do: start, stop, send, broadcast, close, expect and emit,
with the checks that name the statement and what it was given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from lang import ast as A
from lang.errors import EvtRuntimeError
from lang.interpreter.events import (
    Activation,
)
from lang.runtime.core import (
    MAX_DEPTH,
    Inv,
)
from lang.runtime.timers import TimerHandle, TimerSpec
from lang.values import to_str, type_name
from lang.wire.codes import SENDABLE, valid_close_code


class Actions:
    """The statements half of Runtime (a mixin: it uses the Runtime's state)."""


    # ------------------------------------------------------------ statements

    async def emit(self, name: str, value: Any, inv: Inv, span: A.Span) -> None:
        if inv.depth >= MAX_DEPTH:
            raise EvtRuntimeError(f"too much recursion: emit nested more than {MAX_DEPTH} deep",
                                  span)
        await self.dispatch(("event", name), value, None, inv.depth + 1)
        self._stop_if_exiting()

    async def change_scene(self, name: str, inv: Inv | None, span: A.Span) -> None:
        info = self.scenes.get(name)
        if info is None:
            raise EvtRuntimeError(f"unknown scene '{name}'", span)
        depth = inv.depth + 1 if inv is not None else 0
        if depth >= MAX_DEPTH:
            raise EvtRuntimeError("too much recursion: scene changes nested too deep", span)
        old = self.current
        if old is not None:
            try:
                await self._scene_event(old, "scene stop", depth)
            finally:  # an `exit` in `on scene stop` still leaves the scene, once
                for t in list(old.timers):
                    t.evt_cancel()
                if self.current is old:
                    self.current = None
        act = Activation(info)
        self.current = act
        if self.verbose:
            self.log(f"scene: {name}")
        for slot, (fn, is_async), size in info.var_inits:
            fr: list[Any] = [None] * size
            fr[0] = inv if inv is not None else Inv(self, f"scene {name}", span)
            fr[1] = act.vars
            act.vars[slot] = (await fn(fr)) if is_async else fn(fr)
        for spec in info.timers:
            self._start_timer_spec(spec, act)
        await self._scene_event(act, "scene start", depth)

    async def _scene_event(self, act: Activation, kind: str, depth: int) -> None:
        for h in act.info.handlers.get((kind,), ()):
            if self.exiting and not self.shutting_down:
                break
            await self.run_handler(h, None, None, depth, act)
        self._stop_if_exiting()

    def new_timer(self, kind: str, seconds: float, body: Any, span: A.Span, what: str,
                  scene_vars: Any, uses_expect: bool) -> TimerHandle:
        """A timer started by a statement. Scene code's timers belong to the scene's
        activation; once that activation is over (the handler waited past a scene change),
        the timer is born cancelled: it never runs and keeps nothing alive."""
        cur = self.current
        if scene_vars is None:
            act = None
        elif cur is not None and cur.vars is scene_vars:
            act = cur
        else:
            handle = TimerHandle(self, kind, seconds, body, span, what, None,
                                 uses_expect=uses_expect)
            handle.cancelled = True
            return handle
        return TimerHandle(self, kind, seconds, body, span, what, act, uses_expect=uses_expect)

    def start_timer(self, spec: TimerSpec) -> None:
        """Start a top-level timer declared after the program began (the REPL's :load)."""
        self._start_timer_spec(spec, None)

    def _start_timer_spec(self, spec: TimerSpec, act: Activation | None) -> None:
        fn, is_async = spec.interval
        fr: list[Any] = [None] * max(spec.size, 3)
        fr[0] = Inv(self, spec.what, spec.span)
        fr[1] = act.vars if act is not None else None
        try:
            if is_async:
                raise EvtRuntimeError("a timer's interval cannot call a function that waits",
                                      spec.span)
            from lang.ops import duration
            seconds = duration(fn(fr), spec.kind, spec.span, allow_zero=spec.kind == "after")
        except Exception as e:  # a runtime error, or an `exit` or assert in the interval
            self.failure(e, spec.what, spec.span)
            return
        handle = TimerHandle(self, spec.kind, seconds, spec.body, spec.span, spec.what, act,
                             fresh=True, uses_expect=spec.uses_expect)
        handle.begin(fr)

    # -- network statements, dispatched to the endpoint objects (lang.endpoints)

    def describe(self, target: Any) -> str:
        return getattr(target, "label", None) or type_name(target)

    def _need(self, target: Any, method: str, verb: str, wanted: str, span: A.Span) -> Any:
        fn = getattr(target, method, None)
        if fn is None:
            raise EvtRuntimeError(f"'{verb}' needs {wanted}, got {type_name(target)}", span)
        return fn

    async def start(self, target: Any, span: A.Span) -> None:
        await self._need(target, "evt_start", "start", "a connection or a server", span)(span)

    async def stop(self, target: Any, span: A.Span) -> None:
        await self._need(target, "evt_stop", "stop", "a connection or a server", span)(span)

    async def open(self, name: str, overrides: Any, span: A.Span) -> Any:
        """`open NAME [with MAP]` (SPEC §11): a new instance of a connection declaration,
        once its handshake is done or its first attempt failed."""
        ep = self.endpoints.get(name)
        if ep is None or ep.role != "connection":
            what = "a server" if ep is not None else "not declared"
            raise EvtRuntimeError(f"'open' needs a connection; '{name}' is {what}", span)
        return await ep.evt_open(overrides, span)

    async def send(self, target: Any, value: Any, mode: str | None, inv: Inv, span: A.Span
                   ) -> None:
        await self._need(target, "evt_send", "send", "a connection or a peer", span)(
            value, mode, inv, span)

    async def broadcast(self, target: Any, value: Any, mode: str | None, except_: Any,
                        span: A.Span, room: Any = None) -> None:
        fn = self._need(target, "evt_broadcast", "broadcast", "a server", span)
        if room is not None and (type(room) is not str or not room):
            raise EvtRuntimeError(f"broadcast ... to needs a room name (a non-empty string), "
                                  f"got {type_name(room)}", span)
        await fn(value, mode, except_, span, room)

    async def join(self, peer: Any, room: Any, leave: bool, span: A.Span) -> None:
        """`join P ROOM` / `leave P ROOM` (SPEC §16)."""
        verb = "leave" if leave else "join"
        if getattr(peer, "evt_type", None) != "peer":
            raise EvtRuntimeError(f"'{verb}' needs a peer, got {type_name(peer)}", span)
        if type(room) is not str or not room:
            raise EvtRuntimeError(f"'{verb}' needs a room name (a non-empty string), got "
                                  f"{type_name(room)}", span)
        server = peer.server
        await (server.evt_leave(peer, room) if leave else server.evt_join(peer, room))

    async def publish(self, topic: Any, value: Any, span: A.Span) -> None:
        await self.cluster.publish(topic, value, span)

    async def close(self, target: Any, code: Any, reason: Any, span: A.Span) -> None:
        fn = self._need(target, "evt_close", "close", "a connection or a peer", span)
        if not valid_close_code(code):
            raise EvtRuntimeError(f"{to_str(code)} is not a close code a script may send "
                                  f"({SENDABLE})", span)
        if type(reason) is not str:
            raise EvtRuntimeError(f"a close reason must be a string, got {type_name(reason)}",
                                  span)
        if len(reason.encode("utf-8")) > 123:
            raise EvtRuntimeError("a close reason can be at most 123 bytes of UTF-8", span)
        await fn(code, reason, span)

    async def ping(self, target: Any, span: A.Span) -> Any:
        """`ping TARGET` (SPEC §15): the round trip in seconds, or null."""
        return await self._need(target, "evt_ping", "ping", "a connection or a peer", span)()

    async def expect(self, inv: Inv, target: Any, mode: str | None,
                     matches: Callable[[Any], Awaitable[bool]], seconds: float, span: A.Span
                     ) -> tuple[bool, Any]:
        fn = self._need(target, "evt_expect", "expect", "a connection or a peer", span)
        return await fn(inv, mode, matches, seconds, span)

    # -- `wait until` (SPEC §18): the condition is judged again after every event

    def event_passed(self) -> None:
        """Something happened (a handler or timer block ran, a connection or peer opened or
        closed): every `wait until` judges its condition again."""
        ev = self.until_event
        if ev is not None:
            self.until_event = None
            ev.set()

    def _next_event(self) -> anyio.Event:
        ev = self.until_event
        if ev is None:
            ev = self.until_event = anyio.Event()
        return ev

    async def wait_until(self, holds: Callable[[], Awaitable[bool]], seconds: float) -> bool:
        """Wait until `holds()` is true, judged now and after each event, for at most
        `seconds`: whether it came true. (The event to wait for is taken before each
        judgement, so one that happens while a condition that waits is judged is not
        missed.)"""
        ev = self._next_event()
        if await holds():
            return True
        with anyio.move_on_after(seconds):
            while True:
                await ev.wait()
                ev = self._next_event()
                if await holds():
                    return True
        return False
