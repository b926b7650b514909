"""Syntax tree nodes: the machinery of lang/ast.py's classes, and the source span.

Nodes are made by `node`, not by dataclasses: a frozen, slotted dataclass costs half a
millisecond to make (its methods exec'd one by one, the class made twice), and the 57 of
lang.ast were a tenth of evt's start-up. `node` makes the class once with its __slots__ and
execs only its __init__; equality, hashing, repr, immutability and copying are Node's,
driven by two tuples of names per class. What a dataclass would be: the fields in order; a
field marked `span_field()` keyword-only, defaulting to NOSPAN, left out of equality and
repr; any other default a plain default.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from operator import attrgetter
from typing import Any, NamedTuple


class Span(NamedTuple):
    """A position in a source file: line and column count from 1. (A tuple, not a dataclass:
    the parser makes one per node, and a tuple is made three times faster.)"""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NOSPAN = Span("<none>", 0, 0)


_SPAN_FIELD = object()  # what `span_field()` marks a field with
_MISSING = object()
_set = object.__setattr__


def span_field() -> Any:
    return _SPAN_FIELD


def node(cls: type) -> type:
    """The node class for `cls`'s annotated fields (see the module's docstring)."""
    ns = dict(vars(cls))
    names = tuple(ns.get("__annotations__", {}))
    args, spans, compared = [], [], []
    env: dict[str, Any] = {"_set": _set, "NOSPAN": NOSPAN}
    for name in names:
        default = ns.pop(name, _MISSING)
        if default is _SPAN_FIELD:
            spans.append(f"{name}=NOSPAN")
            continue
        compared.append(name)
        if default is _MISSING:
            args.append(name)
        else:
            env[f"_d_{name}"] = default
            args.append(f"{name}=_d_{name}")
    ns.pop("__dict__", None)
    ns.pop("__weakref__", None)
    ns.update(__slots__=names, _fields=names, _compared=tuple(compared),
              _key=attrgetter(*compared) if compared else staticmethod(_no_key),
              __match_args__=tuple(compared))
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    signature = ", ".join(["self", *args] + (["*", *spans] if spans else []))
    body = "".join(f"    _set(self, {n!r}, {n})\n" for n in names) or "    pass\n"
    exec(f"def __init__({signature}):\n{body}", env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    new.__init__ = init
    return new


def _no_key(node: Any) -> tuple:
    return ()


def _rebuild(cls: type, values: tuple) -> Any:
    node = object.__new__(cls)
    for name, value in zip(cls._fields, values, strict=True):  # type: ignore[attr-defined]
        _set(node, name, value)
    return node


def node_fields(node: Any) -> tuple[str, ...]:
    """The field names of a node (or node class), in order; () for anything else."""
    return getattr(node, "_fields", ()) if isinstance(node, Node) or (
        isinstance(node, type) and issubclass(node, Node)) else ()


class Node:
    """The base of every node (see `node`): immutable, compared and hashed by its fields
    but its spans."""

    __slots__ = ()
    _fields: tuple[str, ...]  # set by `node` on each concrete class (only there)
    _compared: tuple[str, ...]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = self._key  # type: ignore[attr-defined]
        return key(self) == key(other)

    def __hash__(self) -> int:
        return hash((self.__class__, self._key(self)))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._compared)
        return f"{type(self).__qualname__}({inner})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple:
        return _rebuild, (self.__class__, tuple(getattr(self, n) for n in self._fields))

    def dump(self) -> str:
        """A compact, span-free rendering, used by golden tests and debugging."""
        return _dump(self)


def _dump(v: Any) -> str:
    if isinstance(v, Node):
        parts = [_dump(getattr(v, n)) for n in v._compared]
        return f"({type(v).__name__}{''.join(' ' + p for p in parts)})"
    if isinstance(v, tuple):
        return "[" + " ".join(_dump(x) for x in v) + "]"
    return repr(v)
