"""Lark rule callbacks -> lang.ast nodes, and the decoding of literals.

Rules of this module:
- The transformer only changes shape: it judges nothing (that is the checker's job).
- Literal problems (a bad escape, an unclosed '${') raise LiteralError with the offset inside
  the token, which the parser turns into a diagnostic at that exact column.
- Expressions inside '${ }' are parsed by calling back into the parser (`sub_parse`), with spans
  placed inside the string token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lang import ast as A
from lang.ast import Span
from lang.errors import AtToken
from lang.limits import MAX_INT_DIGITS
from lang.syntax.cluster import ClusterSyntax
from lang.syntax.instances import InstanceSyntax
from lang.syntax.metrics import MetricSyntax
from lang.syntax.smaller import SmallerAdditions
from lang.syntax.testing import TestSyntax

# ---------------------------------------------------------------- literals

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'", "$": "$"}
_NUMBER = re.compile(r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(ms|s|m|h|B|KiB|MiB|GiB)?")
_DURATION = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_number(text: str) -> int | float:
    """The value of a NUMBER token: durations become float seconds, sizes int bytes."""
    if text[:2] in ("0x", "0X"):
        _check_digits(len(text) - 2)
        return int(text, 16)
    m = _NUMBER.fullmatch(text)
    if m is None:  # the lexer only makes NUMBER tokens that match
        raise ValueError(text)
    mant, unit = m.groups()
    is_float = "." in mant or "e" in mant or "E" in mant
    if not is_float:
        _check_digits(len(mant))
    if unit is None:
        return float(mant) if is_float else int(mant)
    if unit in _DURATION:
        if unit == "ms":
            return float(mant) / 1000 if is_float else int(mant) / 1000
        return float(mant) * _DURATION[unit]
    size = float(mant) * _SIZE[unit] if is_float else int(mant) * _SIZE[unit]
    if isinstance(size, float):
        if not size.is_integer():  # also inf and nan
            raise ValueError(f"'{text}' is not a whole number of bytes")
        return int(size)
    return size


def _check_digits(n: int) -> None:
    # Python's limit for decimal text, in evt's words; a hex literal too: reading it is
    # cheap, but showing it is not (lang.limits)
    if n > MAX_INT_DIGITS:
        raise ValueError(f"a number literal of {n:,} digits is too long (the most is "
                         f"{MAX_INT_DIGITS})")


class LiteralError(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def _read_escape(body: str, i: int) -> tuple[str, int]:
    """Decode the escape at body[i] == '\\'; return (text, next index)."""
    if i + 1 >= len(body):
        raise LiteralError(i, "a string cannot end with a lone '\\'")
    c = body[i + 1]
    if c in _ESCAPES:
        return _ESCAPES[c], i + 2
    if c == "x":
        hexdigits = body[i + 2 : i + 4]
        if len(hexdigits) != 2 or not all(ch in "0123456789abcdefABCDEF" for ch in hexdigits):
            raise LiteralError(i, "'\\x' needs two hex digits, as in '\\x41'")
        return chr(int(hexdigits, 16)), i + 4
    if c == "u":
        close = body.find("}", i + 3)
        digits = body[i + 3 : close] if body.startswith("{", i + 2) and close > 0 else ""
        if not digits or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
            raise LiteralError(i, "'\\u' takes hex digits in braces, as in '\\u{1F600}'")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise LiteralError(i, f"'\\u{{{digits}}}' is not a valid character")
        return chr(code), close + 1
    raise LiteralError(i, f"unknown escape '\\{c}' (known: \\n \\t \\r \\0 \\\\ \\\" \\' \\$ \\xHH \\u{{...}})")


def unclosed_interp(body: str) -> int | None:
    """The index of the first '${' in a string body that has no closing '}', or None."""
    i = body.find("${")
    while i >= 0:
        if i > 0 and body[i - 1] == "\\":
            i = body.find("${", i + 2)
            continue
        end = _interp_end(body, i + 2)
        if end < 0:
            return i
        i = body.find("${", end)
    return None


def _interp_end(body: str, start: int) -> int:
    """Index of the '}' that closes the '${' whose expression starts at body[start], or -1."""
    depth = 0
    i = start
    quote = ""
    while i < len(body):
        c = body[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.|$)", re.DOTALL)


def _decode_escapes(body: str, start: int, end: int) -> str:
    """body[start:end] with its escapes decoded. A regex finds them, so a literal of millions
    of characters costs one pass in C, not a Python step per character."""
    segment = body[start:end]
    if "\\" not in segment:
        return segment
    if end - start <= _CHUNK:
        return _ESCAPE.sub(lambda m: _read_escape(body, start + m.start())[0], segment)
    # a huge literal in chunks: `sub` makes an object per escape before joining them, which
    # for millions of escapes costs gigabytes. A chunk ends before the last backslash run in
    # its window, where an escape starts, so no escape is cut in two.
    out = []
    i = start
    while i < end:
        j = min(i + _CHUNK, end)
        if j < end:
            k = body.rfind("\\", i, j)
            while k > i and body[k - 1] == "\\":
                k -= 1
            if k > i:
                j = k
        out.append(_decode_escapes(body, i, j))
        i = j
    return "".join(out)


_CHUNK = 1 << 20


def _next_interp(body: str, i: int) -> int:
    """The index of the next '${' that is not escaped ('\\${'), or -1."""
    while True:
        at = body.find("${", i)
        if at < 0:
            return -1
        backslashes = len(body[:at]) - len(body[:at].rstrip("\\"))
        if backslashes % 2 == 0:
            return at
        i = at + 2


def _unescape_bytes(body: str) -> bytes:
    """A bytes literal: '\\xHH' is one byte; other characters and escapes are UTF-8."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if body[i + 1 : i + 2] == "x":
                text, i = _read_escape(body, i)
                out.append(ord(text))
                continue
            text, i = _read_escape(body, i)
        else:
            text, i = ch, i + 1
        out += text.encode("utf-8")
    return bytes(out)


# ---------------------------------------------------------------- transformer


class Tok:
    """A token: what the lexer makes and the rule callbacks receive."""

    __slots__ = ("column", "end_pos", "line", "pos", "type", "value")

    def __init__(self, type: str, value: str, line: int, column: int, pos: int, end_pos: int):
        self.type = type
        self.value = value
        self.line = line
        self.column = column
        self.pos = pos
        self.end_pos = end_pos

    def __repr__(self) -> str:
        return f"Tok({self.type}, {self.value!r}, {self.line}:{self.column})"


def _t(tok: Any) -> str:
    return tok.type if isinstance(tok, Tok) else ""


class ToAst(SmallerAdditions, InstanceSyntax, ClusterSyntax, MetricSyntax, TestSyntax):
    """Shapes the grammar's rule callbacks into lang.ast nodes; judges nothing. (Lark calls
    a method by its rule's name, or its alias; not a Lark Transformer: the parser runs
    without Lark, lang.syntax.tables.)"""

    def __init__(self) -> None:
        self.file = "<string>"
        self.line_base = 0  # for expressions inside ${ }: where the expression text starts
        self.col_base = 0
        self.sub_parse: Callable[[str, int, int], A.Expr] | None = None

    def _sp(self, tok: Any) -> Span:
        if self.line_base:
            return Span(self.file, self.line_base, self.col_base + tok.column - 1)
        return Span(self.file, tok.line, tok.column)

    # -- declarations
    def start(self, c: list) -> list:
        return c[0] if c else []

    repl = start

    # -- lists: one Python list, appended to as the left-recursive rule grows
    def _list(self, c: list) -> list:
        if len(c) == 1:
            return [c[0]]
        items = c[0]
        items.append(c[-1])
        return items

    tops = repl_items = stmts = config_items = scene_items = _list

    def names(self, c: list) -> list:
        if len(c) == 1:
            return [c[0].value]
        c[0].append(c[2].value)
        return c[0]

    def exprs(self, c: list) -> list:
        if len(c) == 1:
            return [c[0]]
        c[0].append(c[2])
        return c[0]

    pairs = exprs

    def connection_decl(self, c: list) -> A.Connection:
        return A.Connection(c[1].value, c[2], span=self._sp(c[1]))

    def server_decl(self, c: list) -> A.Server:
        return A.Server(c[1].value, c[2], span=self._sp(c[1]))

    def config_block(self, c: list) -> tuple:
        return tuple(c[1]) if len(c) == 3 else ()

    def config_item(self, c: list) -> A.ConfigItem:
        return A.ConfigItem(c[0].value, c[2], span=self._sp(c[0]))

    def func_decl(self, c: list) -> A.Func:
        params = next((x for x in c if isinstance(x, tuple)), ())
        return A.Func(c[1].value, params, c[-1], span=self._sp(c[1]))

    def params(self, c: list) -> tuple:
        return tuple(c[0])

    def on_decl(self, c: list) -> A.Handler:
        return A.Handler(c[1], c[2], span=self._sp(c[0]))

    def event_tail(self, c: list) -> tuple:
        as_name = from_name = None
        as_span = from_span = A.NOSPAN
        for i, tok in enumerate(c):
            if tok.type == "AS":
                as_name, as_span = c[i + 1].value, self._sp(c[i + 1])
            elif tok.type == "FROM":
                from_name, from_span = c[i + 1].value, self._sp(c[i + 1])
        return as_name, as_span, from_name, from_span

    def _event(self, kind: str, first: Any, name: Any | None, mode: str | None,
               tail: tuple) -> A.Event:
        as_name, as_span, from_name, from_span = tail
        return A.Event(kind, name.value if name is not None else None, mode, as_name, from_name,
                       span=self._sp(name if name is not None else first),
                       as_span=as_span, from_span=from_span)

    def ev_project(self, c: list) -> A.Event:
        return self._event("project " + c[1].value, c[0], None, None, c[2])

    def ev_websocket(self, c: list) -> A.Event:
        return self._event("websocket " + c[1].value, c[0], c[2], None, c[3])

    def ev_receive(self, c: list) -> A.Event:
        mode = c[3] if len(c) == 5 else None
        return self._event("websocket receive", c[0], c[2], mode, c[-1])

    def ev_custom(self, c: list) -> A.Event:
        return self._event("event", c[0], c[1], None, c[2])

    def ev_change(self, c: list) -> A.Event:
        return self._event("change", c[0], c[1], None, c[2])

    def ev_input(self, c: list) -> A.Event:
        return self._event("input", c[0], None, None, c[1])

    def ev_scene(self, c: list) -> A.Event:
        return self._event("scene " + c[1].value, c[0], None, None, c[2])

    def scene_decl(self, c: list) -> A.Scene:
        items = tuple(c[3]) if len(c) == 5 else ()
        return A.Scene(c[1].value, items, span=self._sp(c[1]))

    def import_decl(self, c: list) -> A.Import:
        path = self._string(c[1])
        if not isinstance(path, A.Const):
            raise AtToken(c[1], "an import path cannot use '${...}'")
        return A.Import(path.value, span=self._sp(c[1]))

    # -- statements
    def block(self, c: list) -> A.Block:
        return A.Block(tuple(c[1]) if len(c) == 3 else (), span=self._sp(c[0]))

    def let_stmt(self, c: list) -> A.Let:
        return A.Let(c[1].value, c[3], span=self._sp(c[1]))

    def assign_stmt(self, c: list) -> A.Assign:
        return A.Assign(c[0], c[2], span=self._sp(c[1]))

    def expr_stmt(self, c: list) -> A.ExprStmt:
        return A.ExprStmt(c[0], span=c[0].span)

    def if_stmt(self, c: list) -> A.If:
        orelse = c[4] if len(c) > 3 else None
        return A.If(c[1], c[2], orelse, span=self._sp(c[0]))

    def while_stmt(self, c: list) -> A.While:
        return A.While(c[1], c[2], span=self._sp(c[0]))

    def for_stmt(self, c: list) -> A.For:
        names = tuple(t.value for t in c if _t(t) == "NAME")
        return A.For(names, c[-2], c[-1], span=self._sp(c[0]))

    def break_stmt(self, c: list) -> A.Break:
        return A.Break(span=self._sp(c[0]))

    def continue_stmt(self, c: list) -> A.Continue:
        return A.Continue(span=self._sp(c[0]))

    def return_stmt(self, c: list) -> A.Return:
        return A.Return(c[1] if len(c) > 1 else None, span=self._sp(c[0]))

    def wait_stmt(self, c: list) -> A.Wait:
        return A.Wait(c[1], span=self._sp(c[0]))

    def timer_stmt(self, c: list) -> A.Timer:
        return A.Timer(c[0].value, c[1], c[2], span=self._sp(c[0]))

    def start_stmt(self, c: list) -> A.Start:
        return A.Start(c[1], span=self._sp(c[0]))

    def stop_stmt(self, c: list) -> A.Stop:
        return A.Stop(c[1], span=self._sp(c[0]))

    def target(self, c: list) -> A.Expr:
        if len(c) == 1:  # a NAME, or a target_path already made into an Attr
            return c[0] if isinstance(c[0], A.Expr) else A.Name(c[0].value, span=self._sp(c[0]))
        return c[1]

    def send_mode(self, c: list) -> str:
        return c[0].value

    recv_mode = send_mode

    def send_stmt(self, c: list) -> A.Send:
        mode = c[2] if len(c) == 4 else None
        return A.Send(c[1], mode, c[-1], span=self._sp(c[0]))

    def broadcast_stmt(self, c: list) -> A.Broadcast:
        rest = c[2:]
        mode = rest.pop(0) if isinstance(rest[0], str) else None
        value = rest.pop(0)
        room = except_ = None
        while rest:  # (TO expr)? (EXCEPT expr)?
            word, expr = rest.pop(0), rest.pop(0)
            if word.type == "TO":
                room = expr
            else:
                except_ = expr
        return A.Broadcast(c[1], mode, value, except_, room, span=self._sp(c[0]))

    def close_stmt(self, c: list) -> A.Close:
        code = c[2] if len(c) > 2 else None
        reason = c[4] if len(c) > 4 else None
        return A.Close(c[1], code, reason, span=self._sp(c[0]))

    def expect_stmt(self, c: list) -> A.Expect:
        target = c[1]
        i = 2
        mode = None
        if isinstance(c[i], str):
            mode = c[i]
            i += 1
        name = c[i + 1].value  # AS NAME
        i += 2
        where = within = orelse = None
        while i < len(c):
            kind = c[i].type
            if kind == "WHERE":
                where = c[i + 1]
            elif kind == "WITHIN":
                within = c[i + 1]
            else:
                orelse = c[i + 1]
            i += 2
        return A.Expect(target, mode, name, where, within, orelse, span=self._sp(c[0]))

    def emit_stmt(self, c: list) -> A.Emit:
        return A.Emit(c[1].value, c[2] if len(c) > 2 else None, span=self._sp(c[0]))

    def change_stmt(self, c: list) -> A.ChangeScene:
        return A.ChangeScene(c[2].value, span=self._sp(c[2]))

    def print_stmt(self, c: list) -> A.Print:
        return A.Print(tuple(c[1]) if len(c) > 1 else (), span=self._sp(c[0]))

    def assert_stmt(self, c: list) -> A.Assert:
        return A.Assert(c[1], c[3] if len(c) > 3 else None, span=self._sp(c[0]))

    def exit_stmt(self, c: list) -> A.Exit:
        return A.Exit(c[1] if len(c) > 1 else None, span=self._sp(c[0]))

    def cancel_stmt(self, c: list) -> A.Cancel:
        return A.Cancel(c[1], span=self._sp(c[0]))

    # -- expressions
    def or_expr(self, c: list) -> A.Logic:
        return A.Logic("or", c[0], c[2], span=self._sp(c[1]))

    def and_expr(self, c: list) -> A.Logic:
        return A.Logic("and", c[0], c[2], span=self._sp(c[1]))

    def not_op(self, c: list) -> A.Unary:
        return A.Unary("not", c[1], span=self._sp(c[0]))

    def compare(self, c: list) -> A.Binary:
        op = "not in" if c[1].type == "NOT_IN" else c[1].value
        return A.Binary(op, c[0], c[2], span=self._sp(c[1]))

    def binary(self, c: list) -> A.Binary:
        return A.Binary(c[1].value, c[0], c[2], span=self._sp(c[1]))

    def unary_op(self, c: list) -> A.Expr:
        operand = c[1]
        if c[0].value == "-" and isinstance(operand, A.Const) and type(operand.value) in (int, float):
            return A.Const(-operand.value, span=self._sp(c[0]))
        return A.Unary(c[0].value, operand, span=self._sp(c[0]))

    def index(self, c: list) -> A.Index:
        return A.Index(c[0], c[2], span=self._sp(c[1]))

    def attr(self, c: list) -> A.Attr:
        return A.Attr(c[0], c[2].value, span=self._sp(c[2]))

    def atom(self, c: list) -> A.Expr:
        return c[1]  # ( expr )

    def number(self, c: list) -> A.Const:
        try:
            value = parse_number(c[0].value)
        except ValueError as e:
            raise AtToken(c[0], str(e)) from None
        return A.Const(value, span=self._sp(c[0]))

    def string(self, c: list) -> A.Expr:
        return self._string(c[0])

    def bytes_lit(self, c: list) -> A.Const:
        tok = c[0]
        try:
            value = _unescape_bytes(tok.value[2:-1])
        except LiteralError as e:
            raise AtToken(tok, e.message, e.offset + 2) from None
        return A.Const(value, span=self._sp(tok))

    def const(self, c: list) -> A.Const:
        value = {"true": True, "false": False, "null": None}[c[0].value]
        return A.Const(value, span=self._sp(c[0]))

    def name(self, c: list) -> A.Name:
        return A.Name(c[0].value, span=self._sp(c[0]))

    def call(self, c: list) -> A.Call:
        args = c[2] if len(c) == 4 else ()
        return A.Call(c[0].value, args, span=self._sp(c[0]))

    def args(self, c: list) -> tuple:
        return tuple(c[0])

    def list_lit(self, c: list) -> A.ListLit:
        items = c[1] if len(c) == 3 else ()
        return A.ListLit(items, span=self._sp(c[0]))

    def map_lit(self, c: list) -> A.MapLit:
        pairs = c[1] if len(c) > 2 else []
        keys = tuple(k for k, _ in pairs)
        return A.MapLit(keys, tuple(v for _, v in pairs), span=self._sp(c[0]))

    def pair(self, c: list) -> tuple:
        tok = c[0]
        if tok.type == "NAME":
            key: Any = tok.value
        elif tok.type == "NUMBER":
            try:
                key = parse_number(tok.value)
            except ValueError as e:
                raise AtToken(tok, str(e)) from None
        else:
            k = self._string(tok)
            if not isinstance(k, A.Const):
                raise AtToken(tok, "a map key cannot use '${...}'; build the map and assign m[key]")
            key = k.value
        return key, c[2]

    # -- strings
    def _string(self, tok: Any) -> A.Expr:
        try:
            parts = self._unescape(tok.value[1:-1], interpolate=True, tok=tok)
        except LiteralError as e:
            raise AtToken(tok, e.message, e.offset + 1) from None
        if isinstance(parts, str):
            return A.Const(parts, span=self._sp(tok))
        return A.Interp(tuple(parts), span=self._sp(tok))

    def _unescape(self, body: str, interpolate: bool, tok: Any | None = None) -> str | list:
        if "\\" not in body and (not interpolate or "${" not in body):
            return body
        if not interpolate or "${" not in body:
            return _decode_escapes(body, 0, len(body))
        parts: list = []
        i = 0
        while True:
            start = _next_interp(body, i)
            text = _decode_escapes(body, i, len(body) if start < 0 else start)
            if text:
                parts.append(text)
            if start < 0:
                break
            end = _interp_end(body, start + 2)
            if end < 0:
                raise LiteralError(start, "'${' is never closed with '}'")
            source = body[start + 2 : end]
            if not source.strip():
                raise LiteralError(start, "empty '${}' in a string")
            assert tok is not None
            parts.append(self._sub_expr(source, tok, start + 3))
            i = end + 1
        if len(parts) == 1 and isinstance(parts[0], str):
            return parts[0]
        return parts

    def _sub_expr(self, source: str, tok: Any, offset: int) -> A.Expr:
        """Parse the expression inside '${ }' with spans placed inside the string token."""
        if self.line_base:
            line, col = self.line_base, self.col_base + tok.column - 1 + offset
        else:
            line, col = tok.line, tok.column + offset
        saved = (self.line_base, self.col_base)
        self.line_base, self.col_base = line, col
        try:
            assert self.sub_parse is not None
            return self.sub_parse(source, line, col)
        finally:
            self.line_base, self.col_base = saved
