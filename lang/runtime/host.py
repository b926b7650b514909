"""What the layers below the interpreter need from the running program, as Protocols.

The Runtime (lang.interpreter.program) satisfies all three; the runtime core, the compiler
and the endpoints name only what they use, so none of them imports the interpreter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from lang import ast as A

if TYPE_CHECKING:
    from lang.runtime.core import FuncCell, Inv
    from lang.runtime.timers import TimerHandle


class Host(Protocol):
    """What a source and a timer need from the running program."""

    exiting: bool
    expect_active: int
    shutting_down: bool
    stopping: bool
    timers: set[TimerHandle]

    def hold(self) -> None: ...

    def release(self) -> None: ...

    async def run_body(self, body: Any, fr: list, what: str, span: A.Span) -> None: ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...


class CompilerHost(Protocol):
    """What compiled code needs from the running program (the statements' effects, the
    variables, the functions)."""

    funcs: dict[str, FuncCell]
    global_slots: Any
    globals: list[Any]
    metrics: Any  # lang.metrics.registry.Registry, or None (--no-metrics)
    recorder: Any  # `--record` (SPEC §14): lang.recording.recorder.Recorder, or None
    watched: Any

    async def broadcast(self, target: Any, value: Any, mode: str | None, except_: Any,
                        span: A.Span, room: Any = None) -> None: ...

    async def join(self, peer: Any, room: Any, leave: bool, span: A.Span) -> None: ...

    async def publish(self, topic: Any, value: Any, span: A.Span) -> None: ...

    async def change_scene(self, name: str, inv: Inv | None, span: A.Span) -> None: ...

    async def close(self, target: Any, code: Any, reason: Any, span: A.Span) -> None: ...

    def declare_global(self, name: str, value: Any = None) -> int: ...

    def describe(self, target: Any) -> str: ...

    def echo(self, value: Any) -> None: ...

    async def emit(self, name: str, value: Any, inv: Inv, span: A.Span) -> None: ...

    def endpoint(self, name: str) -> Any: ...

    async def expect(self, inv: Inv, target: Any, mode: str | None, matches: Callable[[Any],
                     Awaitable[bool]], seconds: float, span: A.Span) -> tuple[bool, Any]: ...

    def global_changed(self, index: int, old: Any, new: Any) -> None: ...

    async def open(self, name: str, overrides: Any, span: A.Span) -> Any: ...

    async def ping(self, target: Any, span: A.Span) -> Any: ...

    def new_timer(self, kind: str, seconds: float, body: Any, span: A.Span, what: str,
                  scene_vars: Any, uses_expect: bool) -> TimerHandle: ...

    def scene_var_changed(self, info: Any, index: int, old: Any, new: Any) -> None: ...

    async def send(self, target: Any, value: Any, mode: str | None, inv: Inv,
                   span: A.Span) -> None: ...

    async def sleep(self, seconds: float) -> None: ...

    async def start(self, target: Any, span: A.Span) -> None: ...

    async def stop(self, target: Any, span: A.Span) -> None: ...

    def uses_expect(self, body: A.Block, scene: str | None) -> bool: ...

    async def wait_until(self, holds: Callable[[], Awaitable[bool]], seconds: float
                         ) -> bool: ...

    def write(self, text: str) -> None: ...


class EndpointHost(Protocol):
    """What a connection, a server and its peers need from the running program."""

    cluster: Any  # SPEC §16: lang.interpreter.cluster.ClusterLink
    current: Any
    exiting: bool
    expect_active: int
    handlers: Any
    lifecycle: Any
    message_seq: int
    metrics: Any  # lang.metrics.registry.Registry, or None (--no-metrics)
    recorder: Any  # `--record` (SPEC §14): lang.recording.recorder.Recorder, or None
    shutting_down: bool
    stopping: bool
    trace: bool
    until_event: Any
    verbose: bool

    def alarm(self, deadline: float, fire: Callable[[], Any]) -> Any: ...

    async def dispatch(self, key: tuple, value: Any = None, peer: Any = None, depth: int = 0,
                       since: int | None = None) -> None: ...

    def event_passed(self) -> None: ...

    def has_handlers(self, key: tuple) -> bool: ...

    def hold(self) -> None: ...

    def internal_error(self, what: str, e: BaseException | None = None) -> None: ...

    def keep_alive(self, ws: Any) -> None: ...

    def log(self, text: str) -> None: ...

    def failure(self, e: Exception, what: str, span: A.Span) -> None: ...

    def release(self) -> None: ...

    async def run_handler(self, h: Any, value: Any, peer: Any, depth: int = 0,
                          activation: Any = None,
                          since: int | None = None) -> None: ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...

    def unhandled_ws_error(self, text: str) -> None: ...
