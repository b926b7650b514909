"""The lists-and-maps family: push pop insert remove keys values items range sorted reversed
get has copy."""

from __future__ import annotations

from typing import Any

from lang.values import to_repr, type_name
from stdlib import args
from stdlib.registry import builtin

MAX_RANGE = 10_000_000
_NOT_GIVEN: Any = object()  # range: an argument left out (null given is a type error)


def _shown(key: Any) -> str:
    try:
        text = to_repr(key)
    except ValueError:  # an int too long to print
        return "(a huge int)"
    return text if len(text) <= 60 else text[:60] + "..."


def _index(fn: str, n: int, i: int) -> int:
    """A valid position for index i (negative counts from the end) in a list of length n."""
    if not -n <= i < n:
        shown = f"index {i}" if abs(i) < 10**18 else "index"
        raise args.error(fn, f"{shown} out of range for a list of length {n}")
    return i % n


@builtin("lists")
def push(xs: Any, value: Any) -> list:
    """Append value to the list; return the list."""
    args.list_("push", 1, "xs", xs).append(value)
    return xs


@builtin("lists")
def pop(xs: Any, index: Any = -1) -> Any:
    """Remove and return the item at index (default: the last)."""
    args.list_("pop", 1, "xs", xs)
    i = args.integer("pop", 2, "index", index)
    if not xs:
        raise args.error("pop", "list is empty")
    return xs.pop(_index("pop", len(xs), i))


@builtin("lists")
def insert(xs: Any, index: Any, value: Any) -> list:
    """Insert value before index (clamped to the list, negative from the end); return the list."""
    args.list_("insert", 1, "xs", xs)
    i = args.integer("insert", 2, "index", index)
    n = len(xs)
    if i < 0:
        i = max(i + n, 0)
    xs.insert(min(i, n), value)
    return xs


@builtin("lists")
def remove(container: Any, key: Any) -> Any:
    """Remove the item at a list index, or the entry of a map key; return the removed value."""
    args.one_of("remove", 1, "container", container, (list, dict), "a list or map")
    if type(container) is list:
        i = args.integer("remove", 2, "key", key)
        return container.pop(_index("remove", len(container), i))
    try:
        return container.pop(key)
    except (KeyError, TypeError):
        raise args.error("remove", f"no key {_shown(key)} in the map") from None


@builtin("lists")
def keys(m: Any) -> list:
    """The keys of a map, in insertion order."""
    return list(args.map_("keys", 1, "m", m))


@builtin("lists")
def values(m: Any) -> list:
    """The values of a map, in insertion order."""
    return list(args.map_("values", 1, "m", m).values())


@builtin("lists")
def items(m: Any) -> list:
    """The entries of a map as [key, value] lists, in insertion order."""
    return [[k, v] for k, v in args.map_("items", 1, "m", m).items()]


@builtin("lists")
def range_(start: Any, stop: Any = _NOT_GIVEN, step: Any = _NOT_GIVEN) -> list[int]:
    """range(stop), range(start, stop) or range(start, stop, step): a list of ints."""
    if stop is _NOT_GIVEN:
        first, last = 0, args.integer("range", 1, "stop", start)
    else:
        first = args.integer("range", 1, "start", start)
        last = args.integer("range", 2, "stop", stop)
    by = 1 if step is _NOT_GIVEN else args.integer("range", 3, "step", step)
    if by == 0:
        raise args.error("range", "step must not be 0")
    count = -((first - last) // by)  # ceil((last - first) / by)
    if count > MAX_RANGE:
        raise args.error("range", "too many elements")
    return list(range(first, last, by))


def _sort_kind(v: Any) -> str | None:
    t = type(v)
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    return None


@builtin("lists")
def sorted_(xs: Any) -> list:
    """A new list of the items in ascending order: all numbers, or all strings."""
    args.list_("sorted", 1, "xs", xs)
    if xs:
        kind = _sort_kind(xs[0])
        if kind is None:
            raise args.error("sorted", f"cannot sort {type_name(xs[0])} values")
        for x in xs:
            if _sort_kind(x) != kind:
                raise args.error(
                    "sorted", f"cannot compare {type_name(xs[0])} and {type_name(x)}")
        if kind == "number" and any(x != x for x in xs):
            # Decided: nan sorts after every number (Python's sort leaves a list holding
            # nan in no order at all: sorted([1, nan, 0]) was [1, nan, 0]).
            return sorted(xs, key=_nan_last)
    return sorted(xs)


def _nan_last(x: int | float) -> tuple[bool, int | float]:
    return (True, 0) if x != x else (False, x)


@builtin("lists")
def reversed_(v: Any) -> Any:
    """A new list, string or bytes with the items in reverse order."""
    args.one_of("reversed", 1, "v", v, (list, str, bytes), "a list, string or bytes")
    return v[::-1]


def _lookup(fn: str, container: Any, key: Any) -> tuple[bool, Any]:
    """(True, item) when container holds key, else (False, None)."""
    args.one_of(fn, 1, "container", container, (dict, list, str), "a map, list or string")
    if type(container) is dict:
        try:
            return (key in container, container.get(key))
        except TypeError:  # an unhashable key (a list or map) is never a key
            return (False, None)
    i = args.integer(fn, 2, "key", key)
    if -len(container) <= i < len(container):
        return (True, container[i])
    return (False, None)


@builtin("lists")
def get(container: Any, key: Any, default: Any = None) -> Any:
    """A map's value for key, or a list's or string's item at index; default when missing."""
    found, item = _lookup("get", container, key)
    return item if found else default


@builtin("lists")
def has(container: Any, key: Any) -> bool:
    """Whether a map has the key, or a list or string has the index."""
    return _lookup("has", container, key)[0]


@builtin("lists")
def copy(v: Any) -> Any:
    """A deep copy of a list or map (the lists and maps inside copied too); else the value."""
    t = type(v)
    if t is not list and t is not dict:
        return v
    # without recursion, so that a value nested a million deep copies too; `memo` keeps a
    # list or map that is shared (or inside itself) shared in the copy, as Python's deepcopy
    root: Any = [] if t is list else {}
    memo = {id(v): root}
    stack = [(v, root)]
    while stack:
        src, dst = stack.pop()
        pairs = enumerate(src) if type(src) is list else src.items()
        for k, x in pairs:
            tx = type(x)
            if tx is list or tx is dict:
                c = memo.get(id(x))
                if c is None:
                    c = memo[id(x)] = [] if tx is list else {}
                    stack.append((x, c))
                x = c
            if type(dst) is list:
                dst.append(x)
            else:
                dst[k] = x
    return root
