"""Fuzzing the front end: whatever the text, parse_module and check() give a tree and a list
of diagnostics, or an EvtSyntaxError, never another exception; and every diagnostic has the
`file:line:col: error: message` shape with the source line and a caret under the column.

Inputs are (a) random text, from random characters and from random sequences of evt
tokens, and (b) the golden .evt files of tests/golden with characters or tokens deleted,
duplicated, swapped or inserted.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stdlib
from lang.check.checker import check
from lang.errors import Diagnostic, EvtSyntaxError
from lang.syntax.parser import parse_expr, parse_module, parse_repl

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CORPUS = sorted(GOLDEN.glob("parser/*.evt")) + sorted(GOLDEN.glob("diagnostics/**/*.evt"))
TEXTS = [p.read_text(encoding="utf-8") for p in CORPUS]
BUILTINS = stdlib.load()
FORBIDDEN = ("Token(", "$END", "RBRACE", "LBRACE", "_NL", "Traceback")
PATH = "fuzz.evt"

# pieces of evt: keywords, names, literals, punctuation, whitespace, and broken pieces
SNIPPETS = [
    "connection ", "server ", "let ", "func ", "on ", "every ", "after ", "scene ", "import ",
    "project ", "websocket ", "start ", "stop ", "error ", "receive ", "event ", "change ",
    "input ", "as ", "from ", "text ", "binary ", "json ", "if ", "else ", "while ", "for ",
    "in ", "not in ", "break", "continue", "return ", "wait ", "send ", "broadcast ",
    "except ", "close ", "emit ", "print ", "assert ", "exit ", "expect ", "where ",
    "within ", "cancel ", "and ", "or ", "not ", "true", "false", "null",
    "x", "echo", "m", "peer", "len", "f", "_a1 ", "url", "listen",
    "0", "42", "3.5", "1e3", "0x1F", "250ms", "1.5s", "2m", "1h", "64KiB", "1MiB", "8B", "3x",
    '"s"', "'s'", '"a ${x} b"', "'${ \"q\" }'", '"\\n\\t\\x41\\u{1F600}"', 'b"\\x01"', '"',
    "'", "${", "}", "\\", "\\q", '"${', "b'",
    "{", "}", "(", ")", "[", "]", ",", ":", ".", "=", "==", "!=", "<", "<=", ">", ">=",
    "+", "-", "*", "/", "%", "!", "&&", "@", "$", ";",
    " ", "  ", "\t", "\n", "\n    ", "\r\n", "# c\n", "\ufeff",
]
CHARS = "abcefilmnoprstxyz_019 \t\n;{}()[],:.=+-*/%<>!\"'\\$#&@bBKiMsh\r\u00e9\u2028"
_TOKEN = re.compile(r"""\s+|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\w+|==|!=|<=|>=|\$\{|.""",
                    re.S)

_SHAPE = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>[^\n]+)\n"
                    r"    (?P<src>[^\n]*)\n(?P<pad> *)\^\n")


def _assert_shape(text: str, file: str, source: str) -> None:
    for word in FORBIDDEN:
        assert word not in text or word in source, text  # (a script may say `RBRACE`)
    m = _SHAPE.fullmatch(text)
    assert m is not None, f"not 'file:line:col: error: message' + source + caret:\n{text}"
    assert m["file"] == file
    line, col = int(m["line"]), int(m["col"])
    assert line >= 1 and col >= 1
    assert len(m["pad"]) >= 4
    # the caret is under the line, or just past its end
    assert len(m["pad"]) - 4 <= len(m["src"]), text


def front_end(text: str) -> None:
    """Parse and check `text`; fail on any exception but EvtSyntaxError and on any
    badly shaped diagnostic."""
    try:
        module = parse_module(text, PATH)
    except EvtSyntaxError as e:
        assert isinstance(e.incomplete, bool)
        _assert_shape(e.format(), PATH, text)
        return
    diags = check(list(module.decls), BUILTINS)
    assert isinstance(diags, list)
    for d in diags:
        assert isinstance(d, Diagnostic)
        _assert_shape(d.format(), PATH, text)
    keys = [(d.span.line, d.span.col) for d in diags]
    assert keys == sorted(keys)  # source order


def _mutate(draw: st.DrawFn, text: str) -> str:
    units = _TOKEN.findall(text) if draw(st.booleans()) else list(text)
    for _ in range(draw(st.integers(1, 4))):
        if not units:
            break
        i = draw(st.integers(0, len(units) - 1))
        op = draw(st.sampled_from(["delete", "delete_run", "duplicate", "swap", "insert"]))
        if op == "delete":
            del units[i]
        elif op == "delete_run":
            del units[i : i + draw(st.integers(2, 12))]
        elif op == "duplicate":
            units[i:i] = units[i : i + draw(st.integers(1, 6))]
        elif op == "swap":
            j = draw(st.integers(0, len(units) - 1))
            units[i], units[j] = units[j], units[i]
        else:
            units.insert(i, draw(st.sampled_from(SNIPPETS)))
    return "".join(units)


@st.composite
def mutated_golden(draw: st.DrawFn) -> str:
    return _mutate(draw, draw(st.sampled_from(TEXTS)))


random_text = st.one_of(
    st.text(alphabet=CHARS, max_size=120),
    st.lists(st.sampled_from(SNIPPETS), max_size=40).map("".join),
    st.text(max_size=60),
)

FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_corpus_is_there() -> None:
    assert len(TEXTS) >= 40
    for text in TEXTS:
        front_end(text)


@FAST
@given(random_text)
def test_random_text(text: str) -> None:
    front_end(text)


@FAST
@given(random_text)
def test_random_text_wrapped_in_a_handler(text: str) -> None:
    front_end("on project start {\n    " + text + "\n}\n")


@FAST
@given(mutated_golden())
def test_mutated_golden_files(text: str) -> None:
    front_end(text)


@FAST
@given(random_text)
def test_repl_and_expression_entry_points(text: str) -> None:
    for parse in (lambda t: parse_repl(t, "<repl>"), lambda t: parse_expr(t, "<expr>")):
        try:
            parse(text)
        except EvtSyntaxError as e:
            assert isinstance(e.incomplete, bool)
            for word in FORBIDDEN:
                assert word not in e.format() or word in text
