"""Installing declarations into the running program: variables, functions, handlers,
scenes, timers, connections and servers (at start, and again at each REPL entry)."""

from __future__ import annotations

from typing import Any

from lang import ast as A
from lang.compile import (
    BLOCKING_STMTS,
    Layout,
    Scope,
    body_has,
    functions_with,
    waiting_functions,
)
from lang.interpreter.events import (
    Handler,
    Installed,
    SceneInfo,
    describe_event,
    event_key,
    reply_of,
)
from lang.runtime.core import (
    FuncCell,
)
from lang.runtime.timers import TimerSpec


class Declarations:
    """The declarations half of Runtime (a mixin: it uses the Runtime's state)."""


    def declare_global(self, name: str, value: Any = None) -> int:
        index = self.global_slots.get(name)
        if index is None:
            index = len(self.globals)
            self.global_slots[name] = index
            self.globals.append(value)
            self.watched.append(False)
        else:
            self.globals[index] = value
        return index

    def endpoint(self, name: str) -> Any:
        return self.endpoints.get(name)

    def install(self, decls: list[A.Node], overrides: dict[str, Any] | None = None
                ) -> list[tuple[int, Any]]:
        """Compile declarations into this runtime. Returns the project variable initialisers
        to run, in order: (slot, compiled expression or a constant override)."""
        return self.install_decls(decls, overrides).inits

    def install_decls(self, decls: list[A.Node], overrides: dict[str, Any] | None = None
                      ) -> Installed:
        """Compile declarations into this runtime (all at once for a script; one input at a
        time in the REPL, where a declaration replaces an earlier one of the same name, or a
        handler of the same event, and says so)."""
        from lang.endpoints import make_endpoint

        done = Installed()
        overrides = overrides or {}
        lets = [d for d in decls if isinstance(d, A.Let)]
        for d in lets:
            self.declare_global(d.name)
        for d in decls:
            if isinstance(d, A.Connection | A.Server):
                old = self.endpoints.get(d.name)
                if old is not None and old.role == ("connection" if isinstance(
                        d, A.Connection) else "server"):
                    old.decl = d
                    done.notes.append(f"{old.role} {d.name} redefined (used at its next start)")
                else:
                    self.endpoints[d.name] = make_endpoint(self, d)
        funcs: dict[Any, A.Func] = {}
        scene_decls = [d for d in decls if isinstance(d, A.Scene)]
        for d in decls:
            if isinstance(d, A.Func):
                funcs[d.name] = d
                if d.name in self.funcs:
                    done.notes.append(f"func {d.name} redefined")
        for s in scene_decls:
            if s.name in self.scenes and self.repl:
                done.notes.append(f"scene {s.name} redefined (used when it is next entered)")
            for item in s.items:
                if isinstance(item, A.Func):
                    funcs[(s.name, item.name)] = item
        self.fn_decls.update(funcs)
        every = self.fn_decls
        waiting = waiting_functions(every, force=self.repl)
        self.blocking_funcs = functions_with(every, BLOCKING_STMTS, force=self.repl)
        self.expect_funcs = functions_with(every, (A.Expect,), force=self.repl)
        for key, f in funcs.items():
            cell = FuncCell(f.name, len(f.params), key in waiting, f.span)
            if isinstance(key, tuple):
                self.scenes.setdefault(key[0], SceneInfo(key[0])).func_cells[f.name] = cell
                continue
            old = self.funcs.get(f.name)
            if old is not None:  # the REPL redefines: call sites hold the cell, keep it
                old.is_async, old.nparams, old.span = cell.is_async, cell.nparams, cell.span
                cell = old
            self.funcs[f.name] = cell
        for s in scene_decls:
            self._scene_vars(s)
        for d in lets:
            slot = self.global_slots[d.name]
            if d.name in overrides:
                done.inits.append((slot, ((lambda fr, v=overrides[d.name]: v), False)))
            else:
                assert isinstance(d.value, A.Expr)
                done.inits.append((slot, self.compiler.expr_in(
                    d.value, Scope(Layout(), None, "init", "let"))))
        for d in decls:
            if isinstance(d, A.Func):
                self._compile_func(self.funcs[d.name], d, None)
            elif isinstance(d, A.Handler):
                if self.repl:
                    replaced = self._remove_handlers(d.event)
                    if replaced:
                        done.notes.append(f"replaced the handler for '{replaced}'")
                done.handlers.append(self._add_handler(d, None))
            elif isinstance(d, A.Timer):
                spec = self._timer_spec(d, None)
                self.top_timers.append(spec)
                done.timers.append(spec)
            elif isinstance(d, A.Scene):
                self._compile_scene(d)
            elif isinstance(d, A.Connection | A.Server):
                self.endpoints[d.name].compile_config(self.compiler)
            elif isinstance(d, A.Threshold):
                self.thresholds.append(d)
            elif isinstance(d, A.Cluster):
                self.cluster.install(d, self.compiler)
        self._update_watched()
        self._update_endpoints()
        return done

    def _remove_handlers(self, ev: A.Event) -> str | None:
        """REPL: drop the project handlers for the same event (and mode) as `ev`."""
        key = event_key(ev, None, self)
        old = self.handlers.get(key)
        if not old:
            return None
        keep = [h for h in old if h.mode != ev.mode]
        if len(keep) == len(old):
            return None
        if keep:
            self.handlers[key] = keep
        else:
            del self.handlers[key]
        return describe_event(ev)

    def _scene_vars(self, s: A.Scene) -> None:
        info = self.scenes.setdefault(s.name, SceneInfo(s.name))
        info.var_slots = {}
        for item in s.items:
            if isinstance(item, A.Let) and item.name not in info.var_slots:
                info.var_slots[item.name] = len(info.var_slots)
        info.watched = [False] * len(info.var_slots)

    def _compile_scene(self, s: A.Scene) -> None:
        info = self.scenes[s.name]
        info.var_inits = []
        info.handlers = {}
        info.timers = []
        for item in s.items:
            if isinstance(item, A.Let):
                assert isinstance(item.value, A.Expr)
                layout = Layout()
                compiled = self.compiler.expr_in(item.value, Scope(layout, info, "init", "let"))
                info.var_inits.append((info.var_slots[item.name], compiled, layout.size))
            elif isinstance(item, A.Func):
                self._compile_func(info.func_cells[item.name], item, info)
            elif isinstance(item, A.Handler):
                self._add_handler(item, info)
            elif isinstance(item, A.Timer):
                info.timers.append(self._timer_spec(item, info))

    def _compile_func(self, cell: FuncCell, d: A.Func, scene: SceneInfo | None) -> None:
        scope = Scope(Layout(), scene, "func", f"func {d.name}")
        (body, is_async), _, size = self.compiler.body(d.body, scope, d.params)
        if is_async and not cell.is_async:  # REPL: a redefinition may start to wait
            cell.is_async = True
        cell.body, cell.size = body, size
        if cell.is_async and not is_async:
            sync_body = body

            async def as_async(fr: list) -> Any:
                return sync_body(fr)
            cell.body = as_async

    def _add_handler(self, d: A.Handler, scene: SceneInfo | None) -> Handler:
        key = event_key(d.event, scene, self)
        h = Handler(d.event, key, scene, d.span)
        scope = Scope(Layout(), scene, "handler", h.what)
        (h.body, h.is_async), slots, h.size = self.compiler.body(
            d.body, scope, (d.event.as_name, d.event.from_name))
        h.as_slot, h.from_slot = slots
        scene_name = scene.name if scene is not None else None
        h.blocks = self.repl or body_has(d.body, BLOCKING_STMTS, self.blocking_funcs,
                                         scene_name, self.fn_decls)
        h.uses_expect = self.uses_expect(d.body, scene_name)
        if scene is None and not self.repl and not h.blocks and not h.uses_expect:
            reply = reply_of(d, h.body)  # the shape first: the walk below only for a reply
            if reply is not None and not body_has(d.body, (), set(self.fn_decls), None,
                                                  self.fn_decls):
                h.reply = reply
        table = scene.handlers if scene is not None else self.handlers
        table.setdefault(key, []).append(h)
        if key == ("input",) or key == ("input end",):
            self.wants_input = True
        return h

    def _timer_spec(self, t: A.Timer, scene: SceneInfo | None) -> TimerSpec:
        interval = self.compiler.expr_in(t.interval, Scope(Layout(), scene, "init", "timer"))
        scope = Scope(Layout(), scene, "timer", f"{t.kind} block")
        body, _, size = self.compiler.body(t.body, scope)
        return TimerSpec(t.kind, interval, body, size, t.span,
                         self.uses_expect(t.body, scene.name if scene else None))

    def uses_expect(self, body: A.Block, scene: str | None) -> bool:
        return self.repl or body_has(body, (A.Expect,), self.expect_funcs, scene, self.fn_decls)

    def _update_endpoints(self) -> None:
        """From the handlers (project and every scene), for each connection or server:
        `inline_ok`, whether its messages may run their handlers inside its reader task (no
        receive handler can wait for long, nor, when one reads JSON, an error handler: a
        message that is not JSON runs the error event in place); `expecting`, which of its
        events have a handler that may `expect`."""
        def of(key: tuple) -> list[Handler]:
            handlers = list(self.handlers.get(key, ()))
            for info in self.scenes.values():
                handlers += info.handlers.get(key, [])
            return handlers

        for name, ep in self.endpoints.items():
            receive = of(("ws", "receive", name))
            start = of(("ws", "start", name))
            ep.expecting = frozenset(kind for kind, hs in (("start", start), ("receive", receive))
                                     if any(h.uses_expect for h in hs))
            inline = receive + of(("ws", "error", name)) \
                if any(h.mode == "json" for h in receive) else receive
            ep.inline_ok = not self.repl and not any(h.blocks for h in inline)

    def _update_watched(self) -> None:
        keys = set(self.handlers)
        for info in self.scenes.values():
            keys.update(info.handlers)
        for key in keys:
            if key[0] != "change":
                continue
            if key[1] is None:
                index = self.global_slots.get(key[2])
                if index is not None:
                    self.watched[index] = True
            else:
                info = self.scenes[key[1]]
                info.watched[info.var_slots[key[2]]] = True
