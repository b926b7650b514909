"""What a program declares, and where: the names that completion offers, that definition
and hover resolve, and the outline of one file.

Rules of this module:
- Names resolve as the checker resolves them (lang.check.checker): the innermost local,
  then the current scene's variables, then project variables, then connections and servers;
  a call resolves to the scene's functions, then the project's, then a built-in.
- Spans point at the name of a declaration (the parser's); where the tree keeps no span for
  a name (a parameter, a `for` variable, the `as` of `expect`) it is found in the source
  line after the span the tree does keep.
- Every span is a point; the end of a declaration is where its statement ends in the text
  (lang.lsp.text.statement_end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lang import ast as A

PROJECT_KINDS = ("connection", "server", "func", "scene", "variable")


@dataclass(frozen=True)
class Decl:
    """A declared name: `kind` is connection, server, func, scene or variable (project or
    scene variables, parameters and locals); `scene` the scene it belongs to."""

    kind: str
    name: str
    span: A.Span  # at the name
    scene: str | None = None
    detail: str = ""


@dataclass
class Outline:
    """One entry of a file's outline (document symbols)."""

    kind: str  # connection server func scene variable handler timer test threshold import
    name: str
    span: A.Span  # where the entry's first token is found (a point)
    name_span: A.Span
    detail: str = ""
    children: list[Outline] = field(default_factory=list)


def _func_detail(f: A.Func) -> str:
    return f"func {f.name}({', '.join(f.params)})"


def declarations(decls: list[A.Node]) -> list[Decl]:
    """The project-level declarations and the members of scenes, in source order."""
    out: list[Decl] = []
    for d in decls:
        if isinstance(d, A.Connection):
            out.append(Decl("connection", d.name, d.span, detail=f"connection {d.name}"))
        elif isinstance(d, A.Server):
            out.append(Decl("server", d.name, d.span, detail=f"server {d.name}"))
        elif isinstance(d, A.Func):
            out.append(Decl("func", d.name, d.span, detail=_func_detail(d)))
        elif isinstance(d, A.Let):
            out.append(Decl("variable", d.name, d.span, detail=f"let {d.name}"))
        elif isinstance(d, A.Scene):
            out.append(Decl("scene", d.name, d.span, detail=f"scene {d.name}"))
            for item in d.items:
                if isinstance(item, A.Let):
                    out.append(Decl("variable", item.name, item.span, d.name,
                                    f"let {item.name} (scene {d.name})"))
                elif isinstance(item, A.Func):
                    out.append(Decl("func", item.name, item.span, d.name,
                                    f"{_func_detail(item)} (scene {d.name})"))
    return out


# ---------------------------------------------------------------- locals


def _name_after(lines: list[str], span: A.Span, name: str, lead: str = "") -> A.Span:
    """The position of `name` on the line of `span`, at or after its column (after `lead`,
    a regex, when given); the span itself when it is not found."""
    if not 1 <= span.line <= len(lines):
        return span
    line = lines[span.line - 1]
    m = re.compile(rf"{lead}\b({re.escape(name)})\b").search(line, max(span.col - 1, 0))
    return A.Span(span.file, span.line, m.start(1) + 1) if m else span


def _children(node: A.Node) -> list[A.Node]:
    out: list[A.Node] = []
    for name in A.node_fields(node):
        v = getattr(node, name)
        if isinstance(v, A.Node):
            out.append(v)
        elif isinstance(v, tuple):
            out.extend(x for x in v if isinstance(x, A.Node))
    return out


def local_bindings(decl: A.Node, lines: list[str]) -> list[Decl]:
    """Every name bound inside one top-level declaration (parameters, `let`, `for`,
    `expect ... as`, an event's `as` and `from`), in source order. Scope is not followed
    within the declaration: a name counts from where it is bound."""
    out: list[Decl] = []
    stack: list[A.Node] = [decl]
    while stack:
        node = stack.pop()
        if isinstance(node, A.Func):
            for p in node.params:
                out.append(Decl("variable", p, _name_after(lines, node.span, p, r"[(,]\s*"),
                                detail=f"parameter {p} of {node.name}"))
        elif isinstance(node, A.Let) and node is not decl:
            out.append(Decl("variable", node.name, node.span, detail=f"let {node.name}"))
        elif isinstance(node, A.For):
            for n in node.names:
                out.append(Decl("variable", n, _name_after(lines, node.span, n),
                                detail=f"for {', '.join(node.names)}"))
        elif isinstance(node, A.Expect):
            out.append(Decl("variable", node.name,
                            _name_after(lines, node.span, node.name, r"\bas\s+"),
                            detail=f"expect ... as {node.name}"))
        elif isinstance(node, A.Event):
            if node.as_name is not None:
                out.append(Decl("variable", node.as_name, node.as_span,
                                detail=f"on {node.kind} as {node.as_name}"))
            if node.from_name is not None:
                out.append(Decl("variable", node.from_name, node.from_span,
                                detail=f"on {node.kind} from {node.from_name}"))
        if isinstance(node, A.Node) and not isinstance(node, A.Expr):
            stack.extend(reversed(_children(node)))
    return sorted(out, key=lambda d: (d.span.line, d.span.col))


# ---------------------------------------------------------------- the outline


def _event_name(ev: A.Event) -> str:
    words = ["on", ev.kind]
    if ev.name is not None:
        words.append(ev.name)
    if ev.mode is not None:
        words.append(ev.mode)
    return " ".join(words)


def _event_detail(ev: A.Event) -> str:
    parts = []
    if ev.as_name is not None:
        parts.append(f"as {ev.as_name}")
    if ev.from_name is not None:
        parts.append(f"from {ev.from_name}")
    return " ".join(parts)


def _line_start(lines: list[str], span: A.Span) -> A.Span:
    """The first token of the line of `span` (declarations start their line)."""
    if not 1 <= span.line <= len(lines):
        return span
    line = lines[span.line - 1]
    return A.Span(span.file, span.line, len(line) - len(line.lstrip()) + 1)


def outline(decls: tuple[A.Node, ...], lines: list[str]) -> list[Outline]:
    """The outline of one file's declarations (scenes with their members)."""
    out = []
    for d in decls:
        entry = _entry(d, lines)
        if entry is None:
            continue
        if isinstance(d, A.Scene):
            entry.children = [c for item in d.items if (c := _entry(item, lines)) is not None]
        out.append(entry)
    return out


def _entry(d: A.Node, lines: list[str]) -> Outline | None:
    span = getattr(d, "span", A.NOSPAN)
    start = _line_start(lines, span)
    if isinstance(d, A.Connection | A.Server | A.Scene):
        kind = type(d).__name__.lower()
        return Outline(kind, d.name, start, d.span, f"{kind} {d.name}")
    if isinstance(d, A.Func):
        return Outline("func", d.name, start, d.span, _func_detail(d))
    if isinstance(d, A.Let):
        return Outline("variable", d.name, start, d.span, f"let {d.name}")
    if isinstance(d, A.Handler):
        return Outline("handler", _event_name(d.event), d.span, d.span, _event_detail(d.event))
    if isinstance(d, A.Timer):
        line = lines[span.line - 1] if 1 <= span.line <= len(lines) else d.kind
        name = line[span.col - 1:].split("{")[0].strip() or d.kind
        return Outline("timer", name, d.span, d.span, "")
    if isinstance(d, A.Test):
        return Outline("test", f'test "{d.name}"', start, d.span, "")
    if isinstance(d, A.Threshold):
        return Outline("threshold", f"threshold {d.text}", start, d.span, "")
    if isinstance(d, A.Import):
        return Outline("import", f'import "{d.path}"', start, d.span, "")
    return None
