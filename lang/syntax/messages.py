"""Syntax errors in words: what was found, what was expected, and a hint for the mistakes
people make (a misspelt keyword, an unclosed bracket, Python or JavaScript habits)."""

from __future__ import annotations

import difflib
import re

from lang.ast import Span
from lang.errors import EvtSyntaxError
from lang.syntax.transform import Tok

CLOSERS = {"RPAR", "RSQB", "RBRACE"}
_PAIRS = {"(": ")", "[": "]", "{": "}"}


class ParseError(Exception):
    def __init__(self, token: Tok | None, expected: set[str], stack: list[Tok], pos: int,
                 last: Tok | None = None) -> None:
        super().__init__("parse error")
        self.token = token
        self.expected = expected
        self.stack = stack
        self.pos = pos
        self.last = last  # the last token shifted


_PUNCT = {
    "LBRACE": "'{'", "LMAP": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'", "DOT": "'.'",
    "ASSIGN": "'='", "EQ": "'=='", "NE": "'!='", "LE": "'<='", "GE": "'>='", "LT": "'<'",
    "GT": "'>'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'",
    "PERCENT": "'%'", "NOT_IN": "'not in'",
}
_KINDS = {"NAME": "a name", "STRING": "a string", "NUMBER": "a number",
          "BYTES": "a bytes literal", "_NL": "the end of the line", "$END": "the end of the file"}
_EXPR_START = {"NAME", "NUMBER", "STRING", "BYTES", "TRUE", "FALSE", "NULL", "LSQB", "LPAR",
               "LMAP", "MINUS", "PLUS", "NOT", "OPEN",
               "PING"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "EQ", "NE", "LT", "LE", "GT", "GE",
              "IN", "NOT_IN", "AND", "OR", "LSQB", "DOT"}
_STMT_START = {"LET", "IF", "WHILE", "FOR", "BREAK", "CONTINUE", "RETURN", "WAIT", "AFTER",
               "EVERY", "START", "STOP", "SEND", "BROADCAST", "CLOSE", "EMIT", "CHANGE",
               "PRINT", "ASSERT", "EXIT", "EXPECT", "CANCEL", "COUNT", "MEASURE",
               "SKIP", "REJECT", "JOIN", "LEAVE", "PUBLISH"}
_DECL_START = {"CONNECTION", "SERVER", "LET", "FUNC", "ON", "EVERY", "AFTER", "SCENE", "IMPORT"}
_DECL_WORDS = "connection, server, let, func, on, every, after, scene or import"
_KEYWORD_TYPES = _STMT_START | _DECL_START | {
    "PROJECT", "WEBSOCKET", "RECEIVE", "ERROR", "EVENT", "INPUT", "AS", "FROM", "TEXT",
    "BINARY", "JSON", "ELSE", "IN", "EXCEPT", "WHERE", "WITHIN", "AND", "OR", "NOT", "TRUE",
    "FALSE", "NULL", "OPEN", "WITH", "THRESHOLD"}
_MISSPELLED = {"def": "func", "function": "func", "fn": "func", "fun": "func", "var": "let",
               "const": "let", "elif": "else if", "elseif": "else if", "elsif": "else if",
               "connect": "connection", "when": "on", "puts": "print", "echo": "print",
               "println": "print", "console": "print", "nil": "null", "None": "null",
               "True": "true", "False": "false", "undefined": "null"}


def _word(t: str) -> str:
    if t in _PUNCT:
        return _PUNCT[t]
    if t in _KINDS:
        return _KINDS[t]
    return f"'{t.lower()}'"


def found_words(tok: Tok) -> str:
    t = tok.type
    if t == "SEMI":
        return "';'"
    if t in ("_NL", "$END"):
        if t == "_NL" and tok.value.strip().startswith(";"):
            return "';'"
        return _KINDS[t]
    if t == "ELSE":
        return "'else'"
    if t == "NAME":
        return f"the name '{tok.value}'"
    if t == "NUMBER":
        return f"the number {tok.value}"
    if t in ("STRING", "BYTES"):
        return "a string" if t == "STRING" else "a bytes literal"
    if t in _PUNCT:
        return _PUNCT[t]
    return f"'{tok.value}'"


def expected_words(expected: set[str]) -> str:
    exp = set(expected)
    words: list[str] = []
    if exp >= _DECL_START - {"LET"} and "SEND" not in exp:
        return "a declaration (" + _DECL_WORDS + ")"
    if {"PLUS", "STAR"} <= exp:
        exp -= _OPERATORS
        exp.discard("LPAR")
    if "SEND" in exp and "PRINT" in exp:
        exp -= _STMT_START | _EXPR_START
        words.append("a statement")
    elif {"NAME", "NUMBER", "STRING"} <= exp:
        exp -= _EXPR_START
        words.append("an expression")
    exp.discard("$END") if "_NL" in exp else None
    order = sorted(exp, key=lambda t: (t in ("_NL", "$END"), _word(t)))
    words += [_word(t) for t in order]
    words = list(dict.fromkeys(words))
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    if len(words) > 6:
        return "one of " + ", ".join(words[:6]) + ", ..."
    return ", ".join(words[:-1]) + " or " + words[-1]


def bad_char(text: str, pos: int) -> str:
    ch = text[pos] if pos < len(text) else ""
    if ch in "\"'":
        return "this string is never closed (a string ends on its line; write \\n for a newline)"
    if ch == "b" and text[pos + 1 : pos + 2] in ("\"", "'"):
        return "this bytes literal is never closed"
    if ch.isdigit():
        m = re.match(r"[0-9A-Za-z_.]+", text[pos:])
        word = m.group(0) if m else ch
        unit = re.sub(r"^[0-9.]+([eE][+-]?[0-9]+)?", "", word)
        if unit and not word.startswith(("0x", "0X")):
            return (f"'{word}' is not a number: unknown unit '{unit}' "
                    "(units: ms s m h for durations, B KiB MiB GiB for sizes)")
        return f"'{word}' is not a number"
    if ch == "!" :
        return "unexpected '!': write 'not x' to negate, '!=' to compare"
    if ch in "&|":
        return f"unexpected '{ch}': write 'and' / 'or'"
    if ch == "$":
        return "unexpected '$': '${...}' works only inside a string"
    if ch == "\t" or ch == " ":
        return "unexpected whitespace"
    shown = ch if ch.isprintable() else repr(ch)
    return f"unexpected character '{shown}'"


def syntax_error(e: ParseError, text: str, path: str, first_line: int = 1) -> EvtSyntaxError:
    stack = e.stack
    tok = e.token
    if tok is None:  # no token could be read at e.pos
        pos = e.pos
        if text[pos:pos + 1] in ("'", '"') and pos > 0 and text[pos - 1] == "b" and (
                pos == 1 or not (text[pos - 2].isalnum() or text[pos - 2] == "_")):
            e.pos = pos - 1  # `b"...` unclosed: the lexer read the `b` as a name
        line = text.count("\n", 0, e.pos) + first_line
        col = e.pos - (text.rfind("\n", 0, e.pos) + 1) + 1
        return EvtSyntaxError(Span(path, line, col), bad_char(text, e.pos))
    t = tok.type
    expected = set(e.expected)
    if stack and stack[-1].type != "LBRACE":
        expected.discard("_NL")  # newlines are dropped inside brackets
    if t == "$END":
        if stack:
            opener = stack[-1]
            span = Span(path, opener.line, opener.column)
            return EvtSyntaxError(span, f"this '{opener.value}' is never closed", incomplete=True)
        at = e.last
        span = Span(path, at.line, at.column + len(at.value)) if at is not None and \
            at.type != "_NL" else Span(path, tok.line, tok.column)
        return EvtSyntaxError(span, f"unexpected end of file: expected "
                                    f"{expected_words(expected)}", incomplete=True)
    keyword = _misspelt_statement(tok, e.last, text)
    if keyword is not None and e.last is not None:
        # `strat echo`: a name, then something no expression continues with; the name is
        # what is wrong, and it is near a statement keyword
        return EvtSyntaxError(Span(path, e.last.line, e.last.column),
                              f"unknown statement '{e.last.value}'; did you mean '{keyword}'?")
    span = Span(path, tok.line, tok.column)
    message = f"expected {expected_words(expected)}, found {found_words(tok)}"
    line = _line_at(text, tok.pos)
    hint = _unclosed_hint(tok, stack, line) or _target_hint(tok, line) \
        or _hint(tok, expected, stack, _starts_statement(text, tok.pos))
    before = e.last
    if t == "ASSIGN" and before is not None and before.value in ("+", "-", "*", "/", "%") \
            and before.end_pos == tok.pos:
        op = before.value
        hint = f"evt has no '{op}=': write 'x = x {op} ...'"
    if hint:
        message += "; " + hint
    at_end = t == "_NL" and not text[tok.end_pos:].strip()
    return EvtSyntaxError(span, message, incomplete=at_end and bool(
        expected & (_EXPR_START | {"LBRACE"})))


_DECL_LINE = re.compile(r"(?:on|connection|server|func|scene|import|let|every|after)\b")


_STMT_WORDS = sorted(t.lower() for t in _STMT_START)
# what can follow a statement's first word but cannot continue an expression
_ARGUMENT_START = _EXPR_START - {"LSQB", "LPAR", "MINUS", "PLUS"} | {"LBRACE", "SCENE"}


def _starts_statement(text: str, pos: int) -> bool:
    """Whether only blanks, or a ';', '{' or '}' before them, come before pos on its line."""
    ahead = text[text.rfind("\n", 0, pos) + 1:pos].rstrip()
    return not ahead or ahead.endswith((";", "{", "}"))


def _misspelt_statement(tok: Tok, before: Tok | None, text: str) -> str | None:
    """The statement keyword that the name before `tok` is a misspelling of (`sned echo
    "hi"`, `stpo echo`, `echo "hi"`), when that name starts a statement; else None."""
    if before is None or before.type != "NAME" or tok.type not in _ARGUMENT_START \
            or not _starts_statement(text, before.pos):
        return None
    word = str(before.value)
    if _MISSPELLED.get(word) in ("print", "let", "else if"):
        return _MISSPELLED[word]
    close = difflib.get_close_matches(word, _STMT_WORDS, n=1, cutoff=0.7)
    return close[0] if close else None


def _line_at(text: str, pos: int) -> str:
    """The line of the source that holds position pos."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1:end if end >= 0 else len(text)]


def _unclosed_hint(tok: Tok, stack: list[Tok], line: str) -> str:
    """A declaration at the start of a line while a block is still open: the usual cause
    is a '}' left out above it (the parser only notices a few tokens into that line)."""
    braces = [b for b in stack if b.type == "LBRACE"]
    if not braces or not _DECL_LINE.match(line):
        return ""
    opener = braces[-1]
    return (f"the '{{' at {opener.line}:{opener.column} is still open: is a '}}' missing "
            f"before line {tok.line}?")


# `send by_id[p.id] "x"`: the target of these statements is a name or a parenthesised
# expression, so the line reads as `send by_id [p.id]` and fails at the value
_COMPUTED_TARGET = re.compile(r"[ \t]*(send|close|expect|broadcast)[ \t]+"
                              r"([A-Za-z_]\w*[\[(.]\S*)")


def _target_hint(tok: Tok, line: str) -> str:
    m = _COMPUTED_TARGET.match(line)
    if m is None or tok.column - 1 < m.start(2):
        return ""
    verb, target = m[1], m[2]
    return f"a computed target goes in parentheses: '{verb} ({target}) ...'"


def _hint(tok: Tok, expected: set[str], stack: list[Tok], first: bool) -> str:
    """A hint for the token the parser stopped at; `first`: it begins a statement."""
    t = tok.type
    value = str(tok.value)
    if t == "ASSIGN" and ("EQ" in expected or "LBRACE" in expected):
        return "to compare, write '=='"
    if t in CLOSERS and not stack:
        return f"this '{value}' has no matching opening bracket"
    if t in CLOSERS and stack and _PAIRS[stack[-1].value] != value:
        opener = stack[-1]
        return f"the '{opener.value}' at {opener.line}:{opener.column} is still open"
    if t == "ELSE" and "ELSE" not in expected:
        return "an 'else' must follow the '}' of an 'if' block"
    if t == "NAME" and value in _MISSPELLED and first:  # `x = start echo`: echo is a name
        return f"did you mean '{_MISSPELLED[value]}'?"
    if t == "NAME" and expected & _KEYWORD_TYPES:
        words = [w.lower() for w in expected & _KEYWORD_TYPES if w != "ELSE"]
        close = difflib.get_close_matches(value, words, n=1, cutoff=0.7)
        if close:
            return f"did you mean '{close[0]}'?"
    if expected >= (_DECL_START - {"LET"}) and "SEND" not in expected and (
            t in _STMT_START or t == "NAME"):
        return "statements belong inside a handler, such as 'on project start { ... }'"
    if t == "LBRACE" and expected & {"NAME", "STRING"} and "LMAP" not in expected:
        return "is something missing before the '{'?"
    if t == "_NL" and "LBRACE" in expected:
        return "a block's '{' must be on the same line"
    return ""
