"""The parser's tables: built by Lark from grammar.lark once, then kept on disk in a form
that loads without Lark.

Lark computes the LALR(1) tables and the rule callbacks; the parser (lang.syntax.parser)
runs them with a loop of its own, integer-coded. Importing Lark and loading its own cache
cost about 18 ms of every start (a tenth of a short `evt run`), so what the loop needs is
saved beside Lark's cache as plain data (marshal: ints, strings, tuples, dicts): the actions
and gotos, the start and end states, the keywords and punctuation, and each rule's callback
as the name of a transform.ToAst method with at most one of Lark's two wrappers around it
(a child filter, or "a single child is passed up"), rebuilt here with the same behaviour.
A file is named by a digest of the grammar and of this package's modules; one that is
missing, stale or unreadable is built again, and a callback of another shape
(a later Lark) keeps Lark's objects in memory and writes no file.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import re
from collections.abc import Iterator
from copy import copy
from types import MethodType
from typing import Any

FORMAT = 1  # of the saved tables; a change of it makes every saved file stale


class ChildFilter:
    """Lark's ChildFilterLALR_NoPlaceholders: the children to keep (index, expand: the
    children of an inlined rule's Tree in its place), handed to the node builder."""

    __slots__ = ("node_builder", "to_include")

    def __init__(self, to_include: list[tuple[int, bool]], node_builder: Any) -> None:
        self.to_include = to_include
        self.node_builder = node_builder

    def __call__(self, children: list[Any]) -> Any:
        filtered: list[Any] = []
        for i, to_expand in self.to_include:
            if to_expand:
                if filtered:
                    filtered += children[i].children
                else:
                    filtered = children[i].children
            else:
                filtered.append(children[i])
        return self.node_builder(filtered)


class ExpandSingleChild:
    """Lark's ExpandSingleChild: one child is passed up as it is."""

    __slots__ = ("node_builder",)

    def __init__(self, node_builder: Any) -> None:
        self.node_builder = node_builder

    def __call__(self, children: list[Any]) -> Any:
        if len(children) == 1:
            return children[0]
        return self.node_builder(children)


def _roots(base: str) -> Iterator[str]:
    yield os.path.join(base, "evt")
    import tempfile  # only when the cache directory is not writable

    yield os.path.join(tempfile.gettempdir(), "evt-cache")


def code_key() -> str:
    """What the saved tables depend on besides the grammar: the syntax package's modules
    (ToAst's methods decide, among other things, which rules pass their child through)."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()


def cache_path(grammar: str, suffix: str) -> str | None:
    """A writable place for something derived from this grammar: `grammar-DIGEST.SUFFIX`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(grammar.encode()).hexdigest()[:16]
    for root in _roots(base):
        try:
            os.makedirs(root, exist_ok=True)
            if os.access(root, os.W_OK):
                return os.path.join(root, f"grammar-{digest}.{suffix}")
        except OSError:
            continue
    return None


# ---------------------------------------------------------------- building (Lark)


def build(grammar: str, template: Any) -> dict[str, Any]:
    """Lark's tables for the grammar, recoded for the parser's loop: per state a dict
    terminal -> int (>= 0: shift to that state; < 0: reduce by rule ~n), per rule (size,
    callback bound to `template`, goto by state); and `specs`, the callbacks as data (None
    when one cannot be written so)."""
    from lark import Lark
    from lark.lexer import PatternStr
    from lark.parsers.lalr_analysis import Shift

    cache = cache_path(grammar, "lark.cache")
    lark = Lark(grammar, parser="lalr", lexer="contextual", transformer=template,
                start=["start", "repl", "expr"], cache=cache if cache else False,
                maybe_placeholders=False)
    parser = lark.parser.parser.parser
    table = parser.parse_table
    callbacks = parser.callbacks
    rule_ids: dict[int, int] = {}
    rules: list[tuple[int, Any, str]] = []
    actions: dict[Any, dict[str, int]] = {}
    gotos: dict[Any, dict[str, Any]] = {}
    for state, acts in table.states.items():
        coded: dict[str, int] = {}
        for sym, (action, arg) in acts.items():
            if action is Shift:
                if sym.isupper() or sym == "$END":
                    coded[sym] = arg
                else:
                    gotos.setdefault(state, {})[sym] = arg
            else:
                rid = rule_ids.get(id(arg))
                if rid is None:
                    rid = rule_ids[id(arg)] = len(rules)
                    cb = _direct(callbacks[arg], len(arg.expansion))
                    if _passes_through(arg, cb):
                        cb = None
                    rules.append((len(arg.expansion), cb, arg.origin.name))
                coded[sym] = ~rid
        actions[state] = coded
    keywords: dict[str, str] = {}
    punct: dict[str, str] = {}
    for term in lark.terminals:  # terminals written as plain strings
        if isinstance(term.pattern, PatternStr):
            text = term.pattern.value
            if re.fullmatch(r"[A-Za-z_]\w*", text):
                keywords[text] = term.name
            else:
                punct[text] = term.name
    coded_rules = [(size, cb, {s: g[name] for s, g in gotos.items() if name in g})
                   for size, cb, name in rules]
    specs = [_spec(cb, template) for _, cb, _ in coded_rules]
    return {"actions": actions, "rules": coded_rules, "start_states": dict(table.start_states),
            "end_states": dict(table.end_states), "keywords": keywords, "punct": punct,
            "specs": None if any(s is False for s in specs) else specs}


def _direct(callback: Any, size: int) -> Any:
    """Skip Lark's child filter where it would pass every child through unchanged."""
    include = getattr(callback, "to_include", None)
    builder = getattr(callback, "node_builder", None)
    if builder is not None and include is not None and [tuple(x) for x in include] == [
            (i, False) for i in range(size)]:
        return builder
    return callback


def _passes_through(rule: Any, callback: Any) -> bool:
    """A `?rule: one_child` reduction that hands its child up unchanged: the loop only swaps
    the state for it. (Expressions climb nine such levels, from atom to expr.)"""
    if len(rule.expansion) != 1 or not rule.options.expand1 or rule.alias:
        return False
    probe = object()
    try:
        return callback([probe]) is probe
    except Exception:
        return False


def _method_name(f: Any, template: Any) -> str | None:
    if isinstance(f, MethodType) and f.__self__ is template:
        name = f.__func__.__name__
        if getattr(type(template), name, None) is f.__func__:
            return name
    return None


def _spec(cb: Any, template: Any) -> Any:
    """A callback as data: None, ("m", name), ("f", name, to_include), ("e", name); False
    for one of another shape."""
    if cb is None:
        return None
    name = _method_name(cb, template)
    if name is not None:
        return ("m", name)
    inner = _method_name(getattr(cb, "node_builder", None), template)
    if inner is None:
        return False
    kind = type(cb).__name__
    if kind == "ChildFilterLALR_NoPlaceholders" and set(vars(cb)) == {"node_builder",
                                                                      "to_include"}:
        return ("f", inner, tuple((int(i), bool(e)) for i, e in cb.to_include))
    if kind == "ExpandSingleChild" and set(vars(cb)) == {"node_builder"}:
        return ("e", inner)
    return False


# ---------------------------------------------------------------- saving and loading


def save(path: str, data: dict[str, Any]) -> None:
    """Write the tables (when their callbacks could be written as data), atomically; a
    failure to write only means building them again next time."""
    if data["specs"] is None:
        return
    rules = [(size, spec, goto) for (size, _, goto), spec in zip(data["rules"], data["specs"],
                                                                  strict=True)]
    saved = {"format": FORMAT, "actions": data["actions"], "rules": rules,
             "start_states": data["start_states"], "end_states": data["end_states"],
             "keywords": data["keywords"], "punct": data["punct"]}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            marshal.dump(saved, f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load(path: str, template: Any) -> dict[str, Any] | None:
    """The saved tables with their callbacks bound to `template`, or None (no file, another
    format, or anything wrong with it)."""
    try:
        with open(path, "rb") as f:
            saved = marshal.load(f)
        if type(saved) is not dict or saved.get("format") != FORMAT:
            return None
        rules = [(size, _callback(spec, template), goto) for size, spec, goto in saved["rules"]]
        return {"actions": saved["actions"], "rules": rules,
                "start_states": saved["start_states"], "end_states": saved["end_states"],
                "keywords": saved["keywords"], "punct": saved["punct"]}
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _callback(spec: Any, template: Any) -> Any:
    if spec is None:
        return None
    builder = getattr(template, spec[1])
    if spec[0] == "m":
        return builder
    if spec[0] == "f":
        return ChildFilter([tuple(x) for x in spec[2]], builder)
    if spec[0] == "e":
        return ExpandSingleChild(builder)
    raise ValueError(f"unknown callback {spec[0]!r}")


def rebind(callback: Any, old: Any, new: Any) -> Any:
    """`callback` (a bound method of `old`, or a wrapper of one) calling `new` instead."""
    if isinstance(callback, MethodType):
        return MethodType(callback.__func__, new) if callback.__self__ is old else callback
    inner = getattr(callback, "node_builder", None)
    if inner is None:
        return callback  # None (a pass-through), or Lark's tree builder for a rule ToAst lacks
    wrapper = copy(callback)
    wrapper.node_builder = rebind(inner, old, new)
    return wrapper
