"""The compiler's SPEC §16 statements: `broadcast ... [to ROOM]`, `join`, `leave`,
`publish`: a mixin of the Compiler, as lang.compile.instances is. What they do is the
runtime's (lang.interpreter.actions, lang.interpreter.cluster)."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile.support import Compiled, evaluate


class ClusterStatements:
    """Uses the Compiler's rt and expr."""

    rt: Any
    expr: Any

    def s_Broadcast(self, s: A.Broadcast) -> Compiled:
        target, ta = self.expr(s.target)
        value, va = self.expr(s.value)
        exc, ea = self.expr(s.except_) if s.except_ is not None else ((lambda fr: None), False)
        rt, span, mode = self.rt, s.span, s.mode
        if s.room is None:
            async def broadcast(fr: list) -> None:
                t = await evaluate(target, ta, fr)
                v = await evaluate(value, va, fr)
                await rt.broadcast(t, v, mode, await evaluate(exc, ea, fr), span)
            return broadcast, True
        room, ra = self.expr(s.room)

        async def broadcast_to(fr: list) -> None:
            t = await evaluate(target, ta, fr)
            v = await evaluate(value, va, fr)
            r = await evaluate(room, ra, fr)
            await rt.broadcast(t, v, mode, await evaluate(exc, ea, fr), span, r)
        return broadcast_to, True

    def _room_statement(self, s: A.Join | A.Leave, leave: bool) -> Compiled:
        target, ta = self.expr(s.target)
        room, ra = self.expr(s.room)
        rt, span = self.rt, s.span

        async def join(fr: list) -> None:
            peer = await evaluate(target, ta, fr)
            await rt.join(peer, await evaluate(room, ra, fr), leave, span)
        return join, True

    def s_Join(self, s: A.Join) -> Compiled:
        return self._room_statement(s, False)

    def s_Leave(self, s: A.Leave) -> Compiled:
        return self._room_statement(s, True)

    def s_Publish(self, s: A.Publish) -> Compiled:
        topic, tpa = self.expr(s.topic)
        value, va = self.expr(s.value)
        rt, span = self.rt, s.span

        async def publish(fr: list) -> None:
            t = await evaluate(topic, tpa, fr)
            await rt.publish(t, await evaluate(value, va, fr), span)
        return publish, True
