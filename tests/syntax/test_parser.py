"""The parser: a golden set source -> AST, spans, literals, and a few properties.

Golden files live in tests/golden/parser: each NAME.evt is parsed with parse_module and the
`dump()` of each declaration, one per line, must equal NAME.ast. To rewrite the .ast files
after a deliberate grammar change, run

    EVT_UPDATE_GOLDEN=1 python -m pytest tests/syntax/test_parser.py -k regenerate

and review the diff. Files listed in XFAIL_GOLDEN hold hand-written expectations for known
bugs; they are never rewritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lang import ast as A
from lang.errors import EvtSyntaxError
from lang.syntax.parser import parse_expr, parse_module, parse_repl
from lang.syntax.transform import parse_number

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "parser"
CASES = sorted(p.name for p in GOLDEN.glob("*.evt"))
UPDATE = os.environ.get("EVT_UPDATE_GOLDEN") == "1"

# golden files whose .ast says what the parser SHOULD produce, for a known bug
XFAIL_GOLDEN: dict[str, str] = {}


def dumps(text: str, path: str = "golden.evt") -> str:
    module = parse_module(text, path)
    return "".join(d.dump() + "\n" for d in module.decls)


def _golden_params() -> list:
    out = []
    for name in CASES:
        marks = ([pytest.mark.xfail(strict=True, reason=XFAIL_GOLDEN[name])]
                 if name in XFAIL_GOLDEN else [])
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# ---------------------------------------------------------------- golden set


def test_golden_set_is_there() -> None:
    assert len(CASES) >= 12
    for name in CASES:
        assert (GOLDEN / name).with_suffix(".ast").exists(), f"{name} has no .ast file"
    assert set(XFAIL_GOLDEN) <= set(CASES)


@pytest.mark.parametrize("name", _golden_params())
def test_golden_ast(name: str) -> None:
    source = (GOLDEN / name).read_text(encoding="utf-8")
    expected = (GOLDEN / name).with_suffix(".ast").read_text(encoding="utf-8")
    assert dumps(source, name) == expected


@pytest.mark.skipif(not UPDATE, reason="set EVT_UPDATE_GOLDEN=1 to rewrite the .ast files")
def test_regenerate_golden_ast() -> None:
    for name in CASES:
        if name in XFAIL_GOLDEN:
            continue  # hand-written: what the parser should do
        source = (GOLDEN / name).read_text(encoding="utf-8")
        (GOLDEN / name).with_suffix(".ast").write_text(dumps(source, name), encoding="utf-8")


def _golden_nodes() -> list[A.Node]:
    """Every node of every golden tree (the passing ones), depth first."""
    out: list[A.Node] = []

    def walk(v: object) -> None:
        if isinstance(v, A.Node):
            out.append(v)
            for name in A.node_fields(v):
                walk(getattr(v, name))
        elif isinstance(v, tuple):
            for x in v:
                walk(x)

    for name in CASES:
        if name not in XFAIL_GOLDEN:
            walk(parse_module((GOLDEN / name).read_text(encoding="utf-8"), name))
    return out


def test_golden_set_covers_every_node_type() -> None:
    seen = {type(n) for n in _golden_nodes()}
    every = {c for c in vars(A).values()
             if isinstance(c, type) and issubclass(c, A.Node) and "_fields" in vars(c)}
    assert every - seen == set()


def test_golden_set_covers_every_event_operator_and_mode() -> None:
    nodes = _golden_nodes()
    kinds = {n.kind for n in nodes if isinstance(n, A.Event)}
    assert kinds == {"project start", "project stop", "websocket start", "websocket stop",
                     "websocket error", "websocket receive", "websocket request", "event",
                     "message", "cluster error",
                     "change", "input", "input end",
                     "scene start", "scene stop"}
    ops = {n.op for n in nodes if isinstance(n, A.Binary | A.Logic | A.Unary)}
    assert ops == {"+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "in", "not in",
                   "and", "or", "not"}
    recv = {n.mode for n in nodes if isinstance(n, A.Event)}
    assert recv == {None, "text", "binary", "json"}
    send = {n.mode for n in nodes if isinstance(n, A.Send | A.Broadcast)}
    assert send == {None, "text", "binary"}
    expect = {n.mode for n in nodes if isinstance(n, A.Expect)}
    assert expect == {None, "text", "binary", "json"}


def test_golden_sources_use_every_keyword() -> None:
    grammar = (Path(A.__file__).parent / "syntax" / "grammar.lark").read_text(encoding="utf-8")
    keywords = set(re.findall(r'^[A-Z_]+(?:\.\d+)?: "([a-z]+)"$', grammar, re.M))
    keywords |= {"else", "not in"}
    assert len(keywords) > 50
    text = "\n".join((GOLDEN / n).read_text(encoding="utf-8") for n in CASES)
    missing = {k for k in keywords if not re.search(rf"(?<![\w.]){k}(?!\w)", text)}
    assert missing == set()


# ---------------------------------------------------------------- determinism, equality


def test_parsing_is_deterministic() -> None:
    for name in CASES:
        if name in XFAIL_GOLDEN:
            continue
        source = (GOLDEN / name).read_text(encoding="utf-8")
        first = parse_module(source, name)
        second = parse_module(source, name)
        assert first == second
        assert first.dump() == second.dump()
        assert [d.dump() for d in first.decls] == [d.dump() for d in second.decls]
        # and after parsing something else in between (no state leaks from one parse)
        with pytest.raises(EvtSyntaxError):
            parse_module("on project start {\n    let x = \"${ 1 + }\"\n", "other.evt")
        parse_module('let s = "${ a }"', "third.evt")
        assert parse_module(source, name).dump() == first.dump()


def test_trees_compare_without_spans() -> None:
    a = parse_module("on project start { send echo {id: 1 + 2} }", "a.evt")
    b = parse_module("\n\n# moved\non   project  start {\n        send echo {\n  id: 1+2,\n}\n}\n",
                     "b.evt")
    assert a.decls == b.decls
    assert a == A.Module("a.evt", b.decls)
    assert a.decls[0].body.stmts[0].span != b.decls[0].body.stmts[0].span
    c = parse_module("on project start { send echo {id: 1 + 3} }", "a.evt")
    assert a.decls != c.decls


def test_dump_is_span_free_and_compact() -> None:
    m = parse_module("on websocket receive hub json as m from p { print m }", "d.evt")
    assert m.decls[0].dump() == ("(Handler (Event 'websocket receive' 'hub' 'json' 'm' 'p') "
                                 "(Block [(Print [(Name 'm')])]))")
    assert "Span" not in m.dump() and "d.evt:" not in m.dump()


def test_crlf_cr_and_bom_parse_like_lf() -> None:
    lf = "on project start {\n    print 1\n}\nlet x = [\n  1,\n]\n"
    expected = dumps(lf)
    assert dumps(lf.replace("\n", "\r\n")) == expected
    assert dumps(lf.replace("\n", "\r")) == expected
    assert dumps("\ufeff" + lf) == expected


def test_empty_and_comment_only_files() -> None:
    assert parse_module("", "e.evt").decls == ()
    assert parse_module("\n\n   \n", "e.evt").decls == ()
    assert parse_module("# just a comment", "e.evt").decls == ()
    assert parse_module("# a\n\n# b\n", "e.evt").decls == ()


def test_parse_expr_and_parse_repl() -> None:
    assert parse_expr("1 + 2 * x").dump() == "(Binary '+' (Const 1) (Binary '*' (Const 2) (Name 'x')))"
    assert parse_expr("[1, 2]") == A.ListLit((A.Const(1), A.Const(2)))
    items = parse_repl("let x = 1\nprint x\nfunc f() { }\n")
    assert [type(i).__name__ for i in items] == ["Let", "Print", "Func"]


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("3.5", 3.5), ("0.25", 0.25),
    ("1e3", 1000.0), ("1E3", 1000.0), ("2.5e-2", 0.025), ("1e+2", 100.0),
    ("0x1F", 31), ("0X1f", 31), ("0xff", 255), ("0x0", 0),
    ("250ms", 0.25), ("1ms", 0.001), ("1.5ms", 0.0015), ("1e3ms", 1.0),
    ("1s", 1.0), ("1.5s", 1.5), ("0s", 0.0), ("2m", 120.0), ("0.5m", 30.0),
    ("1h", 3600.0), ("1.5h", 5400.0),
    ("0B", 0), ("64B", 64), ("64KiB", 65536), ("1.5KiB", 1536), ("1MiB", 1048576),
    ("2GiB", 2 * 1024**3), ("0.5MiB", 524288),
])
def test_parse_number(text: str, value: int | float) -> None:
    got = parse_number(text)
    assert got == value
    assert type(got) is type(value)


def test_parse_number_types_by_unit() -> None:
    # a duration is always a float (seconds), a size always an int (bytes)
    for unit in ("ms", "s", "m", "h"):
        assert type(parse_number("2" + unit)) is float
        assert type(parse_number("2.5" + unit)) is float
    for unit in ("KiB", "MiB", "GiB"):
        assert type(parse_number("2" + unit)) is int
        assert type(parse_number("2.5" + unit)) is int  # a whole number of bytes
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_number("2.5B")
    assert type(parse_number("2")) is int and type(parse_number("2.0")) is float


def test_number_literals_through_the_parser() -> None:
    assert parse_expr("64KiB") == A.Const(65536)
    assert parse_expr("-250ms") == A.Const(-0.25)
    assert parse_expr("-0x10") == A.Const(-16)
    assert parse_expr("2 * -3") == A.Binary("*", A.Const(2), A.Const(-3))


def test_huge_size_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(EvtSyntaxError) as info:
        parse_module("let x = 1e400KiB\n", "big.evt")
    assert info.value.span[1:] == (1, 9)


# ---------------------------------------------------------------- spans


SPANS = (
    "on project start {\n"                                  # 1
    "    send echo \"hi ${name} and ${a + bb}\"\n"          # 2
    "\tlet x = 1 +  2\n"                                    # 3
    "    print 'x ${ \"in ${deep}\" }'\n"                   # 4
    "}\n"                                                   # 5
    "on websocket receive hub json as msg from peer { }\n"  # 6
)


def _span(node: A.Node) -> tuple[int, int]:
    return node.span.line, node.span.col


def test_span_of_a_statement_and_its_parts() -> None:
    m = parse_module(SPANS, "spans.evt")
    handler = m.decls[0]
    send = handler.body.stmts[0]
    assert isinstance(send, A.Send)
    assert send.span == A.Span("spans.evt", 2, 5)
    assert _span(send.target) == (2, 10)
    assert _span(send.value) == (2, 15)
    assert _span(handler) == (1, 1)
    assert _span(handler.body) == (1, 18)


def test_span_of_a_binary_operator_is_the_operator() -> None:
    m = parse_module(SPANS, "spans.evt")
    let = m.decls[0].body.stmts[1]
    assert _span(let) == (3, 6)  # the name; a tab is one column
    assert isinstance(let.value, A.Binary)
    assert _span(let.value) == (3, 12)
    assert _span(let.value.left) == (3, 10)
    assert _span(let.value.right) == (3, 15)


def test_span_of_names_inside_interpolation() -> None:
    m = parse_module(SPANS, "spans.evt")
    parts = m.decls[0].body.stmts[0].value.parts
    assert parts[0] == "hi " and parts[2] == " and "
    assert parts[1] == A.Name("name") and _span(parts[1]) == (2, 21)
    plus = parts[3]
    assert isinstance(plus, A.Binary)
    assert _span(plus) == (2, 35)
    assert _span(plus.left) == (2, 33)
    assert _span(plus.right) == (2, 37)
    # a name two interpolations deep
    inner = m.decls[0].body.stmts[2].values[0].parts[1]
    assert isinstance(inner, A.Interp)
    assert inner.parts[1] == A.Name("deep")
    assert _span(inner.parts[1]) == (4, 23)


def test_span_of_event_bindings() -> None:
    m = parse_module(SPANS, "spans.evt")
    ev = m.decls[1].event
    assert _span(ev) == (6, 22)
    assert (ev.as_span.line, ev.as_span.col) == (6, 34)
    assert (ev.from_span.line, ev.from_span.col) == (6, 43)


def test_span_of_a_name_inside_interpolation_in_a_repl_input() -> None:
    items = parse_repl('let a = 1\nprint "v=${a}"\n', "<repl>", first_line=7)
    value = items[1].values[0]
    assert _span(items[1]) == (8, 1)
    assert _span(value.parts[1]) == (8, 12)


# ---------------------------------------------------------------- syntax errors, briefly
# (the exact text of many more is in tests/golden/diagnostics)


def _error(text: str) -> EvtSyntaxError:
    with pytest.raises(EvtSyntaxError) as info:
        parse_module(text, "err.evt")
    return info.value


@pytest.mark.parametrize(("text", "where", "incomplete"), [
    ("on project start {\n    print 1\n", (1, 18), True),
    ("let x = [1,\n  2\n", (1, 9), True),
    ("let x = 1 +", (1, 12), True),
    ("let x = 3x\n", (1, 9), False),
    ("let s = \"a\\qb\"\n", (1, 11), False),
    ("on project start {\n    print \"${ 1 + }\"\n}\n", (2, 19), False),
    ("print 1\n", (1, 1), False),
    ("}\n", (1, 1), False),
])
def test_syntax_error_position_and_incomplete(text: str, where: tuple[int, int],
                                              incomplete: bool) -> None:
    e = _error(text)
    assert (e.span.line, e.span.col) == where
    assert e.incomplete is incomplete
    assert e.format().startswith(f"err.evt:{where[0]}:{where[1]}: error: ")


@pytest.mark.parametrize("text", [
    "let xs = [1;]\n",
    "let x = (1;)\n",
    "let m = {a: 1;}\n",
    "let x = f(1,;2)\n",
])
def test_semicolon_inside_brackets_is_an_error(text: str) -> None:
    _error(text)
