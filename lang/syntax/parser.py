"""Source text -> lang.ast, with syntax errors in our own words.

Rules of this module:
- The grammar is grammar.lark; Lark builds its LALR(1) tables once, and lang.syntax.tables
  keeps them on disk in a form that loads without Lark, so `evt check` starts fast.
- The loop that runs those tables is ours: a contextual lexer and a shift/reduce loop over
  integer-coded actions. (Lark's generic loop hashes a Rule object at every reduction and spent
  two thirds of the parse time doing so.) The rule callbacks are transform.ToAst's methods
  (with Lark's child filters where it has them), so the tree is never built.
- The lexer is contextual, as Lark's is: it asks the parser state what it accepts. A keyword
  is a keyword only where the grammar accepts it (`m.text`, `{from: 1}` are names); a '{' is a
  block (LBRACE) or a map literal (LMAP) by the same test; a newline is dropped inside ( ), [ ]
  and map literals, and joins an `else` on the next line to the `}` before it.
- Nothing of Lark leaves this module: errors become EvtSyntaxError with the offending token's
  position and what was expected, in words.
- Reentrant: the tables are shared and never change once built (a lock makes the first
  build happen once); what a parse changes lives in a per-thread _Context (its own ToAst, and
  the rule callbacks rebound to it), and each parse saves and restores the state it sets.
"""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path
from typing import Any

from lang import ast as A
from lang.ast import Span
from lang.errors import SOURCES, AtToken, EvtSyntaxError
from lang.limits import MAX_NESTING
from lang.syntax import tables
from lang.syntax.messages import (
    CLOSERS,
    ParseError,
    bad_char,
    expected_words,
    found_words,
    syntax_error,
)
from lang.syntax.transform import ToAst, Tok, unclosed_interp

_GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")


class _Tables:
    """What the parser's loop runs (lang.syntax.tables): per state a dict terminal -> int
    (>= 0: shift to that state; < 0: reduce by rule ~n), per rule (size, callback, goto by
    state), the start and end states, the keywords and punctuation. The callbacks are bound
    to `template`: the first _Context takes it as its own, the others rebind them to a
    transformer of their own."""

    def __init__(self) -> None:
        grammar = _GRAMMAR_PATH.read_text(encoding="utf-8")
        self.template = ToAst()
        self.template_taken = False  # by the first _Context (under _TABLES_LOCK)
        path = tables.cache_path(grammar + tables.code_key(), f"tables{tables.FORMAT}")
        data = tables.load(path, self.template) if path else None
        if data is None:
            data = tables.build(grammar, self.template)
            if path:
                tables.save(path, data)
        self.actions: dict[Any, dict[str, int]] = data["actions"]
        self.rules: list[tuple[int, Any, dict[Any, Any]]] = data["rules"]
        self.start_states: dict[str, Any] = data["start_states"]
        self.end_states: dict[str, Any] = data["end_states"]
        self.keywords: dict[str, str] = data["keywords"]
        self.punct: dict[str, str] = data["punct"]
        self.units: dict[tuple, Any] = {}


_TABLES: _Tables | None = None
_TABLES_LOCK = threading.Lock()


def _tables() -> _Tables:
    global _TABLES
    tb = _TABLES
    if tb is None:
        with _TABLES_LOCK:  # two first parses at once: one builds, the other waits for it
            tb = _TABLES
            if tb is None:
                tb = _TABLES = _Tables()
    return tb


class _Context:
    """What one thread parses with: a transformer of its own (whose file and ${ } offsets a
    parse sets) and the rule callbacks bound to it. Built once per thread: the first takes
    the tables' template as it is; rebinding every rule for another costs 10 ms."""

    def __init__(self, tb: _Tables) -> None:
        self.tables = tb
        with _TABLES_LOCK:
            first = not tb.template_taken
            tb.template_taken = True
        if first:
            self.transformer = tb.template
            self.rules = tb.rules
        else:
            self.transformer = ToAst()
            self.rules = [(size, tables.rebind(cb, tb.template, self.transformer), goto)
                          for size, cb, goto in tb.rules]
        self.transformer.sub_parse = self.sub_parse

    def sub_parse(self, source: str, line: int, col: int) -> A.Expr:
        """An expression inside '${ }' of a string at (line, col)."""
        try:
            return _run(self, source, "expr")
        except ParseError as e:
            tok = e.token
            offset = e.pos if tok is None else (len(source) if tok.type == "$END" else tok.pos)
            span = Span(self.transformer.file, line, col + offset)
            if tok is None:
                raise EvtSyntaxError(span, "in '${...}': " + bad_char(source, e.pos)) from None
            found = "'}'" if tok.type == "$END" else found_words(tok)
            raise EvtSyntaxError(span, f"in '${{...}}': expected {expected_words(e.expected)}, "
                                       f"found {found}") from None


_LOCAL = threading.local()


def _context() -> _Context:
    ctx: _Context | None = getattr(_LOCAL, "context", None)
    if ctx is None:
        ctx = _LOCAL.context = _Context(_tables())
    return ctx


# ---------------------------------------------------------------- lexer + loop

# Strings are matched as possessive "unrolled loops" (a run of plain characters, then
# escape + run, repeated, never given back): the plain alternation (?:[^"\\]|\\.)* makes
# `re` keep backtracking state for every character (14 GB and 40 s for a 50 MB literal).
_RAW = re.compile(r"""[ \t\f]*(?:
  (?P<NL>(?:(?:\n|;)[ \t\f]*(?:\#[^\n]*)?)+)
| (?P<COMMENT>\#[^\n]*)
| (?P<BYTES>b"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|b'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+')
| (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
| (?P<NUMBER>(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?:ms|s|m|h|B|KiB|MiB|GiB)?)(?![A-Za-z0-9_]))
| (?P<STRING>"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+')
| (?P<OP>==|!=|<=|>=|[-+*/%<>=(){}\[\],:.])
| (?P<EOF>\Z))""", re.VERBOSE)
_MODES = {"TEXT", "BINARY", "JSON"}
# what cannot start an expression: after it, a mode word can only be the value itself
_ENDS_HERE = re.compile(r"[ \t\f]*(?:#[^\n]*)?(?:\n|;|\}|,|\Z|(?:except|to)(?![A-Za-z0-9_]))")
_ELSE_AHEAD = re.compile(r"[ \t\f]*else(?![A-Za-z0-9_])")
_IN_AHEAD = re.compile(r"[ \t\f]+in(?![A-Za-z0-9_])")
# `open` is the keyword only before a name that is not an operator word (`open up`, not
# `open and ready`, `open(x)` or `open + 1`: there it is a variable or a function)
_OPEN_AHEAD = re.compile(r"[ \t\f]+(?!(?:and|or|not|in|if|else|except|where|within|with)"
                         r"(?![A-Za-z0-9_]))[A-Za-z_]")
# the same for SPEC §12's `count x`, `measure x v` and (at the REPL's prompt) `threshold`
_BEFORE_A_NAME = {"OPEN", "COUNT", "MEASURE", "THRESHOLD", "PING", "JOIN", "LEAVE"}
# SPEC §16's `publish` is the keyword only before a string or such a name (`publish "t" v`)
_PUBLISH_AHEAD = re.compile(r"[ \t\f]+(?:[\"']|(?!(?:and|or|not|in|if|else|except|where|"
                            r"within|with)(?![A-Za-z0-9_]))[A-Za-z_])")
# SPEC §13's `skip` is a variable or a function where an operator, '=' or a call follows
# (`skip = 1`, `skip(x)`, `skip.n`): only there can a statement start with the name
_SKIP_AS_NAME = re.compile(r"[ \t\f]*(?:[=(.\[+\-*/%<>!]|(?:and|or|in|not|if)(?![A-Za-z0-9_]))")
_OPENERS = {"LPAR", "LSQB", "LMAP", "LBRACE"}
# A line that ends with a binary operator (or a '.') goes on on the next line
# (`let x = a +` / `  b`). Not after '=' or ',': there an unfinished line is more often a
# mistake, and the error is clearer where the line ends.
_CONTINUES = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "EQ", "NE", "LT", "LE", "GT", "GE",
              "AND", "OR", "NOT", "IN", "NOT_IN", "DOT"}



def _run(ctx: _Context, text: str, start: str, line_base: int = 1) -> Any:
    """Lex and parse `text` from the start symbol `start`; return the callback's result."""
    tb = ctx.tables
    actions = tb.actions
    rules = ctx.rules
    keywords = tb.keywords
    punct = tb.punct
    end_state = tb.end_states[start]
    state_stack = [tb.start_states[start]]
    value_stack: list[Any] = []
    brackets: list[Tok] = []
    match = _RAW.match
    pos = 0
    n = len(text)
    line = line_base
    line_start = 0
    acts = actions[state_stack[-1]]
    units = tb.units
    last = ""  # the type of the last token shifted
    last_tok: Tok | None = None
    while True:
        # ---- lex one token, in the context of the current state
        m = match(text, pos)
        if m is None:
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\f"))
            raise ParseError(None, set(acts), brackets, pos, last_tok)
        kind = m.lastgroup
        if kind == "EOF":
            tok = Tok("$END", "", line, n - line_start + 1, n, n)
        else:
            pos = m.start(kind)
            value = m.group(kind)
            end = m.end()
            if kind == "COMMENT":
                pos = end
                continue
            col = pos - line_start + 1
            if kind == "NL":
                tok_line = line
                nl = value.count("\n")
                if nl:
                    line += nl
                    line_start = pos + value.rfind("\n") + 1
                if ((brackets and brackets[-1].type != "LBRACE") or last in _CONTINUES) \
                        and ";" not in value:
                    pos = end
                    continue
                if brackets and brackets[-1].type != "LBRACE":
                    at = value.index(";")
                    semi = pos + at
                    before = value.rfind("\n", 0, at)
                    semi_line = tok_line + value.count("\n", 0, at)
                    semi_col = at - before if before >= 0 else col + at
                    tok = Tok("SEMI", ";", semi_line, semi_col, semi, semi + 1)
                    raise ParseError(tok, _really_expected(tb, state_stack, end_state),
                                     brackets, semi, last_tok)
                if "ELSE" in acts:
                    m2 = _ELSE_AHEAD.match(text, end)
                    if m2 is not None:
                        tok = Tok("ELSE", "else", line, m2.end() - 4 - line_start + 1, pos, m2.end())
                        pos = m2.end()
                        kind = ""
                if kind:
                    tok = Tok("_NL", value, tok_line, col, pos, end)
                    pos = end
            elif kind == "NAME":
                ttype = keywords.get(value)
                if value == "else":
                    # a field (`m.else`) or a map key; elsewhere never a name, so that a
                    # stray `else` gets its own message
                    in_map_key = bool(brackets) and brackets[-1].type == "LMAP" and \
                        last in ("LMAP", "COMMA")
                    ttype = "NAME" if last == "DOT" or in_map_key else "ELSE"
                elif ttype is None:
                    ttype = "NAME"
                elif value == "not" and "NOT_IN" in acts and _IN_AHEAD.match(text, end):
                    end = _IN_AHEAD.match(text, end).end()  # type: ignore[union-attr]
                    ttype = "NOT_IN"
                elif ttype not in acts:
                    if "NAME" in acts:
                        ttype = "NAME"  # a keyword only where the grammar takes it
                elif acts[ttype] < 0 and "NAME" in acts and \
                        not _shifts(tb, state_stack, ttype, end_state):
                    # a reduction first: the keyword may only look possible (an LALR state
                    # merges the lookaheads of every context it serves); a shift is certain
                    ttype = "NAME"
                elif ttype in _MODES and "NAME" in acts and _ENDS_HERE.match(text, end):
                    ttype = "NAME"  # `send c text`: a mode word that ends the statement is
                    # the value sent, a variable
                elif ttype == "UNTIL" and _ENDS_HERE.match(text, end):
                    ttype = "NAME"  # `wait until` alone waits for a variable named until
                elif ttype in ("SKIP", "REJECT") and "NAME" in acts and \
                        _SKIP_AS_NAME.match(text, end):
                    ttype = "NAME"
                elif ttype in _BEFORE_A_NAME and "NAME" in acts and \
                        not _OPEN_AHEAD.match(text, end):
                    ttype = "NAME"
                elif ttype == "PUBLISH" and "NAME" in acts and \
                        not _PUBLISH_AHEAD.match(text, end):
                    ttype = "NAME"
                tok = Tok(ttype, value, line, col, pos, end)
                pos = end
            elif kind == "OP":
                ttype = punct[value]
                if value == "{":
                    ttype = "LBRACE" if "LBRACE" in acts else "LMAP"
                tok = Tok(ttype, value, line, col, pos, end)
                pos = end
            else:  # NUMBER STRING BYTES
                tok = Tok(kind, value, line, col, pos, end)
                pos = end
                if kind == "STRING" and "${" in value:
                    at = unclosed_interp(value[1:-1])
                    if at is not None:
                        # its quote again further on the line: a same-quote string
                        # inside ${ } probably ended it early
                        line_end = text.find("\n", end)
                        rest = text[end:line_end if line_end >= 0 else len(text)]
                        nested = value[-1] in rest
                        hint = ("; inside '${...}' write strings with the other quote style"
                                if nested else "")
                        raise AtToken(tok, "'${' is never closed with '}'" + hint, at + 1)
        # ---- feed it: reduce as long as the table says so, then shift
        ttype = tok.type
        while True:
            act = acts.get(ttype)
            if act is None:
                raise ParseError(tok, _really_expected(tb, state_stack, end_state), brackets,
                                 tok.pos, last_tok)
            if act >= 0:
                if ttype == "$END":
                    raise ParseError(tok, _really_expected(tb, state_stack, end_state),
                                     brackets, tok.pos, last_tok)
                state_stack.append(act)
                value_stack.append(tok)
                acts = actions[act]
                last = ttype
                last_tok = tok
                if ttype in _OPENERS:
                    brackets.append(tok)
                    if len(brackets) > MAX_NESTING:
                        raise AtToken(tok, f"nested too deeply: more than {MAX_NESTING} open "
                                           "brackets and blocks")
                elif ttype in CLOSERS:
                    brackets.pop()
                break
            size, callback, goto = rules[~act]
            if callback is None:
                # A run of pass-through reductions leaves the stack depth alone, so where it
                # ends depends only on (state below, state, lookahead): remember it.
                below = state_stack[-2]
                key = (below, state_stack[-1], ttype)
                state = units.get(key)
                if state is None:
                    state = units[key] = _unit_chain(tb, below, goto[below], ttype, end_state)
                state_stack[-1] = state
                if ttype == "$END" and state == end_state:
                    return value_stack[-1]
                acts = actions[state]
                continue
            if size:
                children = value_stack[-size:]
                del state_stack[-size:]
                del value_stack[-size:]
            else:
                children = []
            value_stack.append(callback(children))
            state = goto[state_stack[-1]]
            state_stack.append(state)
            if ttype == "$END" and state == end_state:
                return value_stack[-1]
            acts = actions[state]


def _unit_chain(tb: _Tables, below: Any, state: Any, ttype: str, end_state: Any) -> Any:
    """Follow pass-through reductions from `state` (reached over `below`) on lookahead ttype."""
    while not (ttype == "$END" and state == end_state):
        act = tb.actions[state].get(ttype)
        if act is None or act >= 0:
            break
        _size, callback, goto = tb.rules[~act]
        if callback is not None:
            break
        state = goto[below]
    return state


def _shifts(tb: _Tables, stack: list[Any], ttype: str, end_state: Any) -> bool:
    """Whether `ttype` really shifts from this stack, after the reductions it triggers. (An
    LALR state merges the lookaheads of every context it serves, so a terminal it lists may
    still fail a few reductions later.)"""
    stack = list(stack)
    while True:
        act = tb.actions[stack[-1]].get(ttype)
        if act is None:
            return False
        if act >= 0:
            return True
        size, _callback, goto = tb.rules[~act]
        if size:
            del stack[-size:]
        state = goto[stack[-1]]
        if ttype == "$END" and state == end_state:
            return True
        stack.append(state)


def _really_expected(tb: _Tables, stack: list[Any], end_state: Any) -> set[str]:
    return {t for t in tb.actions[stack[-1]] if _shifts(tb, stack, t, end_state)}


def _prepare(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def parse_module(text: str, path: str = "<string>") -> A.Module:
    """Parse a whole file. Raises EvtSyntaxError."""
    text = _prepare(text)
    SOURCES.add(path, text)
    decls = _parse(text + "\n", path, "start")
    return A.Module(path, tuple(decls), span=Span(path, 1, 1))


def parse_repl(text: str, path: str = "<repl>", first_line: int = 1) -> list[A.Node]:
    """Parse one REPL input (declarations and statements) whose first line is line
    `first_line` of `path`. Raises EvtSyntaxError, whose `incomplete` says whether more lines
    could complete the input."""
    return _parse(_prepare(text) + "\n", path, "repl", first_line)


def parse_expr(text: str, path: str = "<string>") -> A.Expr:
    """Parse one expression (used for --set values)."""
    return _parse(_prepare(text), path, "expr")


_GC_LOCK = threading.Lock()
_GC_HELD = 0  # parses running that turned the cyclic collector off
_GC_WAS_ON = False


def _parse(text: str, path: str, start: str, first_line: int = 1) -> Any:
    global _GC_HELD, _GC_WAS_ON
    ctx = _context()
    tr = ctx.transformer
    saved = (tr.file, tr.line_base, tr.col_base)  # a parse nested in another, on one thread
    tr.file = path
    tr.line_base = tr.col_base = 0
    # A parse allocates many objects and makes no cycles: the cyclic collector would only
    # cost time (about 12% of a large parse). It is the process's: it stays off while any
    # thread parses and comes back on (if it was on) when the last one ends.
    with _GC_LOCK:
        if _GC_HELD == 0:
            _GC_WAS_ON = gc.isenabled()
            gc.disable()
        _GC_HELD += 1
    try:
        return _run(ctx, text, start, first_line)
    except ParseError as e:
        raise syntax_error(e, text, path, first_line) from None
    except AtToken as e:
        raise EvtSyntaxError(Span(path, e.tok.line, e.tok.column + e.offset), e.message) from None
    finally:
        tr.file, tr.line_base, tr.col_base = saved
        with _GC_LOCK:
            _GC_HELD -= 1
            if _GC_HELD == 0 and _GC_WAS_ON:
                gc.enable()


