"""lang/nodes.py: the syntax tree's classes behave as the frozen dataclasses they replaced
(immutable, equal and hashed by their fields but the spans, copied and pickled whole, a
keyword-only span defaulting to NOSPAN, plain defaults), for every node class of lang.ast."""

from __future__ import annotations

import copy
import inspect
import pickle
from dataclasses import FrozenInstanceError

import pytest

from lang import ast as A
from lang.syntax.parser import parse_module

SRC = """
connection c { url = "ws://127.0.0.1:1/" }
on websocket receive c as m from p { broadcast c m to "r" except p; send p {a: [1, m.x]} }
"""


def node_classes() -> list[type]:
    return [c for c in vars(A).values()
            if isinstance(c, type) and issubclass(c, A.Node) and "_fields" in vars(c)]


def test_spans_take_no_part_in_equality_or_hashing() -> None:
    a = A.Name("x", span=A.Span("f.evt", 1, 2))
    b = A.Name("x", span=A.Span("g.evt", 9, 9))
    assert a == b and hash(a) == hash(b) and a.span != b.span
    assert A.Name("x") != A.Name("y")
    assert A.Name("x") != A.Const("x")  # another class, the same fields
    assert A.Break() == A.Break(span=A.Span("f", 1, 1))  # a node with no field but a span
    assert repr(A.Attr(A.Name("o"), "f")) == "Attr(obj=Name(name='o'), name='f')"


def test_nodes_are_immutable() -> None:
    n = A.Name("x")
    with pytest.raises(FrozenInstanceError):
        n.name = "y"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del n.name  # type: ignore[misc]
    with pytest.raises(AttributeError):
        object.__setattr__(n, "other", 1)  # slots: no __dict__


def test_signatures_are_the_dataclass_ones() -> None:
    for cls in node_classes():
        params = inspect.signature(cls).parameters
        spans = [p for p in params.values() if p.name.endswith("span")]
        assert spans, cls
        assert all(p.kind is p.KEYWORD_ONLY and p.default is A.NOSPAN for p in spans), cls
        assert list(params) == list(cls._fields), cls
    b = A.Broadcast(A.Name("s"), None, A.Const(1), None)
    assert b.room is None and b.span is A.NOSPAN
    with pytest.raises(TypeError):
        A.Name("x", A.NOSPAN)  # the span only by keyword


def test_trees_copy_and_pickle_whole() -> None:
    tree = parse_module(SRC, "t.evt")
    for clone in (copy.copy(tree), copy.deepcopy(tree), pickle.loads(pickle.dumps(tree))):
        assert clone == tree and clone.dump() == tree.dump()
        assert [d.span for d in clone.decls] == [d.span for d in tree.decls]
    assert copy.deepcopy(tree).decls[1] is not tree.decls[1]
