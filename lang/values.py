"""evt values on Python objects, and the rules for printing and comparing them.

Rules of this module:
- null bool int float string bytes list map are None bool int float str bytes list dict.
  Everything else (peers, connections, servers, timers) is an object with an `evt_type`
  attribute naming its type.
- Printing (print, interpolation, str()) and literal form (the REPL's echo) live here, once.
- `==` compares by value across int and float, never between bool and a number.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lang.errors import EvtRuntimeError
from lang.limits import MAX_INT_DIGITS, MAX_RESULT, int_too_long

_NAMES: dict[type, str] = {
    type(None): "null", bool: "bool", int: "int", float: "float", str: "string",
    bytes: "bytes", list: "list", dict: "map",
}


def type_name(v: Any) -> str:
    """The evt name of a value's type, as `type()` returns it."""
    name = _NAMES.get(type(v))
    if name is not None:
        return name
    return getattr(v, "evt_type", type(v).__name__)


def a_type(v: Any) -> str:
    """'an int', 'a string', 'null': a value's type with its article, for messages."""
    name = type_name(v)
    if name == "null":
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


# ---------------------------------------------------------------- printing


def format_float(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return repr(x)


# How a string or bytes literal writes the characters that have a short escape.
_ESCAPES = {'"': '\\"', "\\": "\\\\", "$": "\\$", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def bytes_literal(b: bytes) -> str:
    """b"..." with printable ASCII as is and every other byte as \\xHH."""
    out = []
    for byte in b:
        ch = chr(byte)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return 'b"' + "".join(out) + '"'


TOO_LONG = (f"an int of more than {MAX_INT_DIGITS} digits is too long to show in decimal "
            "(hex(n) shows it in base 16)")


def int_text(v: int) -> str:
    """An int in decimal. More than MAX_INT_DIGITS digits is a runtime error, as in Python:
    the conversion takes time quadratic in the length, during which nothing else runs.
    (lang.limits sets Python's own limit to MAX_INT_DIGITS, which str() checks at once.)"""
    try:
        return str(v)
    except ValueError:
        raise EvtRuntimeError(TOO_LONG) from None


def brief(v: Any) -> str:
    """A value as a message shows it: to_str, except that what is too large to show is named
    by what it is ("an int of more than 4300 digits")."""
    if type(v) is int and int_too_long(v):
        return f"(an int of more than {MAX_INT_DIGITS} digits)"
    try:
        return to_str(v)
    except EvtRuntimeError:
        return f"({a_type(v)} too large to show)"


def to_str(v: Any) -> str:
    """How `print`, interpolation and `str()` show a value."""
    t = type(v)
    if t is str:
        return v
    if t is int:
        return int_text(v)
    if t is bool:
        return "true" if v else "false"
    if v is None:
        return "null"
    if t is float:
        return format_float(v)
    if t is list or t is dict:
        return _container(v, 0)
    if t is bytes:
        return bytes_literal(v)
    return str(v)


# Showing a value is bounded in depth (deeper parts print as "...") and in size: a value with
# shared parts (`push(x, x)` twice, forty times) would otherwise expand without end.
SHOW_LIMIT = 16 * 1024 * 1024  # characters


class _Budget:
    """What is left to show, and the lists and maps being shown (a value inside itself is
    shown as [...] or {...}, as Python does)."""

    __slots__ = ("left", "path")

    def __init__(self) -> None:
        self.left = SHOW_LIMIT
        self.path: set[int] = set()

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise EvtRuntimeError("the value is too large to show (more than 16 Mi "
                                  "characters)")


def _container(v: Any, depth: int, budget: _Budget | None = None) -> str:
    if budget is None:
        budget = _Budget()
    if depth > 100:
        return "..."
    if id(v) in budget.path:
        return "[...]" if type(v) is list else "{...}"
    budget.spend(len(v) + 2)
    budget.path.add(id(v))
    try:
        if type(v) is list:
            return "[" + ", ".join(_inner(x, depth + 1, budget) for x in v) + "]"
        return "{" + ", ".join(f"{_json_str(_key(k))}: {_inner(x, depth + 1, budget)}"
                               for k, x in v.items()) + "}"
    finally:
        budget.path.discard(id(v))


def _key(k: Any) -> str:
    return k if type(k) is str else to_str(k)


def _inner(v: Any, depth: int, budget: _Budget) -> str:
    t = type(v)
    if t is str:
        budget.spend(len(v))
        return _json_str(v)
    if t is list or t is dict:
        return _container(v, depth, budget)
    text = to_str(v)
    budget.spend(len(text))
    return text


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def to_repr(v: Any, depth: int = 0, budget: _Budget | None = None) -> str:
    """The literal form of a value, as the REPL echoes it: strings quoted."""
    t = type(v)
    if budget is None:
        budget = _Budget()
    if t is str:
        budget.spend(len(v))
        return string_literal(v)
    if t is list or t is dict:
        if depth > 100:
            return "..."
        if id(v) in budget.path:
            return "[...]" if t is list else "{...}"
        budget.spend(len(v) + 2)
        budget.path.add(id(v))
        try:
            if t is list:
                return "[" + ", ".join(to_repr(x, depth + 1, budget) for x in v) + "]"
            return "{" + ", ".join(f"{string_literal(_key(k))}: "
                                   f"{to_repr(x, depth + 1, budget)}" for k, x in v.items()) + "}"
        finally:
            budget.path.discard(id(v))
    return to_str(v)


def string_literal(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def escape_remote(text: str, limit: int = 200) -> str:
    """Text that came from a peer, made safe to write to a terminal: control characters are
    escaped so they cannot move the cursor or change colours, and long text is cut."""
    cut = len(text) > limit
    text = text[:limit]
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{{{ord(ch):x}}}")
    return "".join(out) + ("..." if cut else "")


# ---------------------------------------------------------------- comparing


def equals(a: Any, b: Any) -> bool:
    """evt `==`: by value; int and float compare as numbers; bool equals only bool."""
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is list or ta is dict:
            return _equal_containers(a, b, [COMPARE_LIMIT])
        return bool(a == b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return bool(a == b)
    return False


COMPARE_LIMIT = 10_000_000  # elements `==` may visit: shared parts could make it endless


def _equal_containers(a: Any, b: Any, left: list[int]) -> bool:
    if a is b:
        return True  # the same list or map (and what it shares with itself)
    left[0] -= len(a) + 1
    if left[0] < 0:
        raise EvtRuntimeError("the values are too large to compare (more than 10 million "
                              "elements)")
    if len(a) != len(b):
        return False
    if type(a) is list:
        pairs: Any = zip(a, b, strict=True)
    else:
        if a.keys() != b.keys():
            return False
        pairs = ((x, b[k]) for k, x in a.items())
    for x, y in pairs:
        tx = type(x)
        if tx is type(y) and (tx is list or tx is dict):
            if not _equal_containers(x, y, left):
                return False
        elif not equals(x, y):
            return False
    return True


def contains(container: Any, item: Any) -> bool:
    """evt `in`: substring, list member (by evt ==), or map key."""
    t = type(container)
    if t is str:
        if type(item) is not str:
            raise EvtRuntimeError(f"'in' on a string needs a string on the left, got {type_name(item)}")
        return item in container
    if t is list:
        ti = type(item)
        if ti is str or item is None:
            return item in container
        return any(equals(item, x) for x in container)
    if t is dict:
        try:
            return item in container
        except TypeError:
            return False
    if t is bytes:
        if type(item) is bytes:
            return item in container
        if type(item) is int and 0 <= item < 256:
            return item in container
        raise EvtRuntimeError(f"'in' on bytes needs bytes or a byte value, got {type_name(item)}")
    raise EvtRuntimeError(f"'in' needs a string, list, map or bytes on the right, got {type_name(container)}")


def os_text(s: str) -> str:
    """A string from the operating system (argv, the environment) with the bytes that were
    not UTF-8 as U+FFFD, as Node reads them: Python keeps them as lone surrogates, which no
    string operation, print or send can take."""
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        return s.encode("utf-8", "replace").decode("utf-8")


# ---------------------------------------------------------------- JSON

# built once: json.dumps with arguments builds an encoder at every call
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def to_json(v: Any, pretty: bool = False) -> str:
    """Compact JSON (`{"k":2}`), or indented with pretty. Bytes and other non-JSON values are
    a runtime error."""
    _json_size(v)
    try:
        if pretty:
            return json.dumps(v, ensure_ascii=False, allow_nan=False, indent=2)
        return _COMPACT(v)
    except RecursionError:
        raise EvtRuntimeError("cannot convert to JSON: nested too deeply") from None
    except (TypeError, ValueError) as e:
        problem = _json_problem(v)
        if problem is None and "digits" in str(e):
            problem = "an integer has too many digits"
        raise EvtRuntimeError(f"cannot convert to JSON: {problem or e}") from None


JSON_LIMIT = 10_000_000  # elements in one JSON text


def _json_size(v: Any) -> None:
    """Refuse a value whose JSON would be endless (shared parts expand once per path), or
    longer than MAX_RESULT characters (a list of a thousand copies of one 50 MB string was a
    MemoryError)."""
    t = type(v)
    if t is not list and t is not dict:
        return
    left = JSON_LIMIT
    chars = MAX_RESULT
    stack = [v]
    while stack:
        x = stack.pop()
        left -= len(x)
        if left < 0:
            raise EvtRuntimeError(_endless(v, "the value is too large (more than 10 million "
                                              "elements)"))
        if type(x) is dict:
            chars -= sum(len(k) for k in x if type(k) is str)
        for y in (x if type(x) is list else x.values()):
            ty = type(y)
            if ty is str:
                chars -= len(y)
            elif ty is list or ty is dict:
                if len(stack) > 10_000:
                    raise EvtRuntimeError(_endless(v, "nested too deeply"))
                stack.append(y)
        if chars < 0:
            raise EvtRuntimeError(f"cannot convert to JSON: the text would be more than "
                                  f"{MAX_RESULT:,} characters")


def _endless(v: Any, otherwise: str) -> str:
    what = "a list or map is inside itself" if holds_itself(v) else otherwise
    return f"cannot convert to JSON: {what}"


def holds_itself(v: Any) -> bool:
    """Whether a list or map is inside itself (an iterative depth-first walk, each container
    visited once: shared parts cost nothing more)."""
    if type(v) is not list and type(v) is not dict:
        return False
    done: set[int] = set()
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(v, False)]
    while stack:
        x, leaving = stack.pop()
        if leaving:
            on_path.discard(id(x))
            done.add(id(x))
            continue
        if id(x) in done:
            continue
        on_path.add(id(x))
        stack.append((x, True))
        for y in (x if type(x) is list else x.values()):
            if type(y) is list or type(y) is dict:
                if id(y) in on_path:
                    return True
                if id(y) not in done:
                    stack.append((y, False))
    return False


def _json_problem(v: Any, depth: int = 0) -> str | None:
    if depth > 200:
        return "nested too deeply"
    t = type(v)
    if t is float and (math.isinf(v) or math.isnan(v)):
        return f"{format_float(v)} has no JSON form"
    if t is list:
        for x in v:
            p = _json_problem(x, depth + 1)
            if p:
                return p
        return None
    if t is dict:
        for k, x in v.items():
            if type(k) not in (str, int, float, bool) and k is not None:
                return f"a map key of type {type_name(k)}"
            if type(k) is float and not math.isfinite(k):
                return f"a map key {format_float(k)} has no JSON form"
            p = _json_problem(x, depth + 1)
            if p:
                return p
        return None
    if t in (str, int, float, bool) or v is None:
        return None
    return f"{a_type(v)} value has no JSON form"


# A \u escape of a surrogate (D800-DFFF): json.loads pairs them, and keeps lone ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(v: Any) -> bool:
    """Whether a parsed JSON value holds a lone surrogate anywhere (an iterative walk: the
    value may be nested as deeply as the parser allowed)."""
    stack = [v]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is str:
            if _SURROGATE.search(x):
                return True
        elif t is list:
            stack.extend(x)
        elif t is dict:
            stack.extend(x)
            stack.extend(x.values())
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no nan or infinity)")


# Decided: NaN, Infinity and -Infinity are refused, as JavaScript's JSON.parse does (Python's
# json takes them); a number too large for a float (1e999) is inf, as there.
_JSON_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(text: str | bytes) -> Any:
    """JSON text to a value, refusing what is not Unicode: bytes must be UTF-8 (a leading
    byte order mark is skipped; json.loads would guess UTF-16 and let UTF-8-encoded
    surrogates through), and a lone surrogate escape ("\\ud800") would make a string that
    can be neither printed nor sent. Raises ValueError, RecursionError: `json_error` words
    them."""
    if type(text) is bytes:
        skip = 3 if text.startswith(b"\xef\xbb\xbf") else 0
        try:
            text = text[skip:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"not valid UTF-8 at byte {e.start + skip}") from None
    elif text.startswith("\ufeff"):  # as json.loads says it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    v = _JSON_DECODER.decode(text)
    if type(v) is not bool and v is not None and type(v) not in (int, float):
        if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(v):
            raise ValueError("a \\u escape of a lone surrogate is not a character")
    return v


# The json module's messages, in evt's words ("Invalid control character at" came out as
# "... at at line 1 column 2").
_JSON_WORDS = {
    "Expecting value": "expected a value",
    "Extra data": "more text after the value",
    "Invalid control character at": "a control character inside a string",
    "Unterminated string starting at": "a string that is not closed, starting",
    "Unexpected UTF-8 BOM (decode using utf-8-sig)": "a byte order mark (U+FEFF) before the value",
    "Expecting ',' delimiter": "expected ','",
    "Expecting ':' delimiter": "expected ':'",
    "Expecting property name enclosed in double quotes": "expected a key in double quotes",
    "Invalid \\escape": "a bad escape",
    "Invalid \\uXXXX escape": "a bad \\u escape",
    "Illegal trailing comma before end of array": "a comma before ']'",
    "Illegal trailing comma before end of object": "a comma before '}'",
}


def json_error(e: BaseException) -> str:
    """What parse_json found wrong, in evt's words."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, json.JSONDecodeError):
        return f"{_JSON_WORDS.get(e.msg, e.msg)} at line {e.lineno} column {e.colno}"
    message = str(e)
    if "recursion" in message:
        return "nested too deeply"
    if "integer string conversion" in message:
        return "a number has too many digits"
    return message
