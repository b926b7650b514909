"""The evt syntax tree: immutable nodes with source spans, and no behaviour.

Rules of this module:
- Every node is immutable and compares structurally; the span takes no part in equality, so a
  parser test can compare a whole tree against one written by hand.
- The parser builds these nodes, the checker judges them, the compiler turns them into closures.
  Nothing here knows how a node is run.
"""

from __future__ import annotations

from typing import Any

from lang.nodes import NOSPAN, Node, Span, node_fields  # noqa: F401  (the tree's API)
from lang.nodes import node as _node
from lang.nodes import span_field as _sp

# ---------------------------------------------------------------- expressions


class Expr(Node):
    __slots__ = ()


@_node
class Const(Expr):
    """null, true, false, numbers (units already applied), plain strings, bytes."""

    value: Any
    span: Span = _sp()


@_node
class Interp(Expr):
    """An interpolated string: literal str parts and expressions, in order."""

    parts: tuple[str | Expr, ...]
    span: Span = _sp()


@_node
class Name(Expr):
    name: str
    span: Span = _sp()


@_node
class ListLit(Expr):
    items: tuple[Expr, ...]
    span: Span = _sp()


@_node
class MapLit(Expr):
    keys: tuple[Any, ...]
    values: tuple[Expr, ...]
    span: Span = _sp()


@_node
class Call(Expr):
    name: str
    args: tuple[Expr, ...]
    span: Span = _sp()


@_node
class Index(Expr):
    obj: Expr
    index: Expr
    span: Span = _sp()


@_node
class Attr(Expr):
    obj: Expr
    name: str
    span: Span = _sp()


@_node
class Open(Expr):
    """`open NAME [with MAP]` (SPEC §11): a new instance of a connection declaration."""

    name: str
    overrides: Expr | None
    span: Span = _sp()
    name_span: Span = _sp()


@_node
class Ping(Expr):
    """`ping TARGET` (SPEC §15): the round trip in seconds, or null."""

    target: Expr
    span: Span = _sp()


@_node
class Unary(Expr):
    op: str  # "-", "+", "not"
    operand: Expr
    span: Span = _sp()


@_node
class Binary(Expr):
    """Arithmetic and comparison: + - * / % == != < <= > >= in "not in"."""

    op: str
    left: Expr
    right: Expr
    span: Span = _sp()


@_node
class Logic(Expr):
    """Short-circuit `and` / `or`."""

    op: str
    left: Expr
    right: Expr
    span: Span = _sp()


# ---------------------------------------------------------------- statements


class Stmt(Node):
    __slots__ = ()


@_node
class Block(Node):
    stmts: tuple[Stmt, ...]
    span: Span = _sp()


@_node
class Timer(Stmt):
    """`after D { }` / `every D { }`: a top-level declaration or a statement."""

    kind: str  # "after" | "every"
    interval: Expr
    body: Block
    span: Span = _sp()


@_node
class Let(Stmt):
    name: str
    value: Expr | Timer
    span: Span = _sp()


@_node
class Assign(Stmt):
    target: Expr  # Name, Index or Attr (the checker rejects anything else)
    value: Expr | Timer
    span: Span = _sp()


@_node
class ExprStmt(Stmt):
    expr: Expr
    span: Span = _sp()


@_node
class If(Stmt):
    cond: Expr
    then: Block
    orelse: Block | If | None
    span: Span = _sp()


@_node
class While(Stmt):
    cond: Expr
    body: Block
    span: Span = _sp()


@_node
class For(Stmt):
    names: tuple[str, ...]  # one name, or two for `for k, v in items(m)`
    iterable: Expr
    body: Block
    span: Span = _sp()


@_node
class Break(Stmt):
    span: Span = _sp()


@_node
class Continue(Stmt):
    span: Span = _sp()


@_node
class Return(Stmt):
    value: Expr | None
    span: Span = _sp()


@_node
class Wait(Stmt):
    duration: Expr
    span: Span = _sp()


@_node
class WaitUntil(Stmt):
    """`wait until COND [within D] [else { }]` (SPEC §18)."""

    cond: Expr
    within: Expr | None
    orelse: Block | None
    span: Span = _sp()


@_node
class Count(Stmt):
    """`count NAME [VALUE]` (SPEC §12): adds VALUE (default 1) to the counter NAME."""

    name: str
    value: Expr | None
    span: Span = _sp()


@_node
class Measure(Stmt):
    """`measure NAME VALUE` (SPEC §12): a sample of the trend NAME."""

    name: str
    value: Expr
    span: Span = _sp()


@_node
class Start(Stmt):
    target: Expr
    span: Span = _sp()


@_node
class Stop(Stmt):
    target: Expr
    span: Span = _sp()


@_node
class Send(Stmt):
    target: Expr
    mode: str | None  # None, "text", "binary"
    value: Expr
    span: Span = _sp()


@_node
class Broadcast(Stmt):
    """`broadcast S [MODE] MSG [to ROOM] [except P]`: `room` is SPEC §16's."""

    target: Expr
    mode: str | None
    value: Expr
    except_: Expr | None
    room: Expr | None = None
    span: Span = _sp()


@_node
class Join(Stmt):
    """`join P ROOM` (SPEC §16)."""

    target: Expr
    room: Expr
    span: Span = _sp()


@_node
class Leave(Stmt):
    """`leave P ROOM` (SPEC §16)."""

    target: Expr
    room: Expr
    span: Span = _sp()


@_node
class Publish(Stmt):
    """`publish TOPIC VALUE` (SPEC §16): `on message TOPIC` in every process of the cluster."""

    topic: Expr
    value: Expr
    span: Span = _sp()


@_node
class Close(Stmt):
    target: Expr
    code: Expr | None
    reason: Expr | None
    span: Span = _sp()


@_node
class Expect(Stmt):
    target: Expr
    mode: str | None  # None, "text", "binary", "json"
    name: str
    where: Expr | None
    within: Expr | None
    orelse: Block | None
    span: Span = _sp()


@_node
class Emit(Stmt):
    name: str
    value: Expr | None
    span: Span = _sp()


@_node
class ChangeScene(Stmt):
    name: str
    span: Span = _sp()


@_node
class Print(Stmt):
    values: tuple[Expr, ...]
    span: Span = _sp()


@_node
class Assert(Stmt):
    cond: Expr
    message: Expr | None
    span: Span = _sp()


@_node
class Exit(Stmt):
    code: Expr | None
    span: Span = _sp()


@_node
class Reject(Stmt):
    """`reject STATUS [, BODY]` (SPEC §15): in `on websocket request`, answer the upgrade
    with an HTTP error and end the connection."""

    status: Expr
    body: Expr | None
    span: Span = _sp()


@_node
class Skip(Stmt):
    """`skip [MESSAGE]` (SPEC §13): ends a test's body and marks the test skipped."""

    message: Expr | None
    span: Span = _sp()


@_node
class Cancel(Stmt):
    timer: Expr
    span: Span = _sp()


# ---------------------------------------------------------------- declarations


@_node
class ConfigItem(Node):
    key: str
    value: Expr
    span: Span = _sp()


@_node
class Connection(Node):
    name: str
    items: tuple[ConfigItem, ...]
    span: Span = _sp()


@_node
class Server(Node):
    name: str
    items: tuple[ConfigItem, ...]
    span: Span = _sp()


@_node
class Func(Node):
    name: str
    params: tuple[str, ...]
    body: Block
    span: Span = _sp()


@_node
class Event(Node):
    """What a handler listens to.

    kind: "project start", "project stop", "websocket start", "websocket stop",
    "websocket error", "websocket receive", "event", "change", "input", "scene start",
    "scene stop", "message" (SPEC §16: `name` is the topic), "cluster error". `name` is the
    connection, server, custom event or variable name.
    """

    kind: str
    name: str | None
    mode: str | None
    as_name: str | None
    from_name: str | None
    span: Span = _sp()
    as_span: Span = _sp()
    from_span: Span = _sp()


@_node
class Handler(Node):
    event: Event
    body: Block
    span: Span = _sp()


@_node
class Scene(Node):
    name: str
    items: tuple[Node, ...]  # Let, Func, Handler, Timer
    span: Span = _sp()


@_node
class Import(Node):
    path: str
    span: Span = _sp()


@_node
class Threshold(Node):
    """`threshold METRIC[TAG].STAT OP VALUE` (SPEC §12), judged when the run ends; `text`
    is the condition as written (for the breach message)."""

    metric: str
    tag: str | None
    stat: str | None
    op: str
    value: float
    text: str
    span: Span = _sp()
    tag_span: Span = _sp()
    stat_span: Span = _sp()
    op_span: Span = _sp()


@_node
class Test(Node):
    """`test "NAME" { ... }` (SPEC §13): run by `evt test` as a handler of its own after
    `on project start`; `evt run` ignores it."""

    name: str
    body: Block
    span: Span = _sp()


@_node
class Cluster(Node):
    """`cluster { url = ... }` (SPEC §16): this process joins a cluster through Redis."""

    items: tuple[ConfigItem, ...]
    span: Span = _sp()


@_node
class Module(Node):
    """One parsed file (imports not yet followed)."""

    path: str
    decls: tuple[Node, ...]
    span: Span = _sp()


Decl = (Connection | Server | Let | Func | Handler | Timer | Scene | Import | Threshold | Test
        | Cluster)
