"""Handlers and scenes as the interpreter holds them: which event a handler answers (its
key), what is installed, and a scene's variables while it is current."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lang import ast as A
from lang.runtime.core import (
    FuncCell,
    Inv,
)

if TYPE_CHECKING:
    from lang.runtime.timers import TimerHandle, TimerSpec

_WS_KINDS = {"websocket start": "start", "websocket stop": "stop", "websocket error": "error",
             "websocket receive": "receive", "websocket request": "request"}


class Handler:
    """A compiled `on ...` declaration."""

    __slots__ = ("as_slot", "blocks", "body", "event", "from_slot", "is_async", "key", "mode",
                 "reply", "scene", "size", "span", "uses_expect", "what")

    def __init__(self, event: A.Event, key: tuple, scene: SceneInfo | None, span: A.Span
                 ) -> None:
        self.event = event
        self.key = key
        self.scene = scene
        self.span = span
        self.mode = event.mode
        self.what = describe_event(event)
        self.body: Any = None
        self.is_async = True
        self.size = 3
        self.as_slot: int | None = None
        self.from_slot: int | None = None
        self.blocks = True  # may wait for long: never run inside a connection's reader
        self.uses_expect = True
        self.reply: tuple[Any, str | None, A.Span] | None = None  # see reply_of


def describe_event(ev: A.Event) -> str:
    parts = ["on", ev.kind]
    if ev.name is not None:
        parts.append(ev.name)
    if ev.mode is not None:
        parts.append(ev.mode)
    return " ".join(parts)


def event_key(ev: A.Event, scene: SceneInfo | None, rt: Any) -> tuple:
    kind = ev.kind
    if kind in _WS_KINDS:
        return ("ws", _WS_KINDS[kind], ev.name)
    if kind == "event" or kind == "message":  # `on message TOPIC` (SPEC §16)
        return (kind, ev.name)
    if kind == "change":
        if scene is not None and ev.name in scene.var_slots:
            return ("change", scene.name, ev.name)
        return ("change", None, ev.name)
    return (kind,)


def reply_of(d: A.Handler, body: Any) -> tuple[Any, str | None, A.Span] | None:
    """For a receive handler that is one `send` of a plain value back to the message's sender
    (`on websocket receive S as m from p { send p VALUE }`: an echo, a mock's answer), the
    parts that let it run from the read itself, without a coroutine or the reader's task
    (lang.endpoints.channel `take_now`): (VALUE's compiled closure, the send's mode, its
    span). None for anything else: VALUE may wait, or another statement is there. (The
    caller also rules out a VALUE that calls a function of the script, which could print:
    output that may have to wait for room.)"""
    ev = d.event
    parts = getattr(body, "parts", None)
    if parts is None or ev.kind != "websocket receive" or ev.mode is not None \
            or ev.from_name is None or len(d.body.stmts) != 1:
        return None
    target, value, mode, span = parts
    if not isinstance(target, A.Name) or target.name != ev.from_name \
            or target.name == ev.as_name:
        return None
    return value, mode, span


def run_reply(rt: Any, h: Handler, msg: str | bytes, peer: Any) -> None:
    """Runtime.run_handler for a handler with a `reply` (reply_of), from the read's callback:
    the value is worked out and given to the peer's `evt_send_now`, which queues its frame
    without waiting; a failure is reported, as any handler's."""
    value, mode, span = h.reply  # type: ignore[misc]
    fr: list[Any] = [None] * h.size
    inv = fr[0] = Inv(rt, h.what, h.span, 0)
    if h.as_slot is not None:
        fr[h.as_slot] = msg
    fr[h.from_slot] = peer  # type: ignore[index]
    try:
        peer.evt_send_now(value(fr), mode, inv, span)
    except Exception as e:
        rt.failure(e, h.what, h.span)
    if rt.until_event is not None:
        rt.event_passed()


class Installed:
    """What one install added: initialisers to run, new handlers and timers, and notes for
    the REPL (what an input replaced)."""

    def __init__(self) -> None:
        self.inits: list[tuple[int, Any]] = []
        self.handlers: list[Handler] = []
        self.timers: list[TimerSpec] = []
        self.notes: list[str] = []


class SceneInfo:
    """A compiled scene: its variables' slots and initialisers, functions, handlers, timers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.var_slots: dict[str, int] = {}
        self.var_inits: list[tuple[int, Any, int]] = []  # (slot, compiled, frame size)
        self.watched: list[bool] = []
        self.func_cells: dict[str, FuncCell] = {}
        self.handlers: dict[tuple, list[Handler]] = {}
        self.timers: list[TimerSpec] = []


class Activation:
    """A scene while it is current: its variables and running timers."""

    __slots__ = ("info", "timers", "vars")

    def __init__(self, info: SceneInfo) -> None:
        self.info = info
        self.vars: list[Any] = [None] * len(info.var_slots)
        self.timers: set[TimerHandle] = set()
