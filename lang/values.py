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
from decimal import Decimal
from typing import Any

from .errors import EvtRuntimeError

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


def bytes_literal(b: bytes) -> str:
    """b"..." with printable ASCII as is and every other byte as \\xHH."""
    out = []
    for byte in b:
        ch = chr(byte)
        if ch in '"\\$':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        else:
            out.append(f"\\x{byte:02x}")
    return 'b"' + "".join(out) + '"'


def int_text(v: int) -> str:
    """An int in decimal, however long (Python refuses str() past 4,300 digits; Decimal's
    conversion has no such limit and is fast)."""
    try:
        return str(v)
    except ValueError:
        return str(Decimal(v))


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


def _container(v: Any, depth: int) -> str:
    if depth > 100:
        return "..."
    if type(v) is list:
        return "[" + ", ".join(_inner(x, depth + 1) for x in v) + "]"
    return "{" + ", ".join(f"{_json_str(_key(k))}: {_inner(x, depth + 1)}"
                           for k, x in v.items()) + "}"


def _key(k: Any) -> str:
    return k if type(k) is str else to_str(k)


def _inner(v: Any, depth: int) -> str:
    t = type(v)
    if t is str:
        return _json_str(v)
    if t is list or t is dict:
        return _container(v, depth)
    return to_str(v)


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def to_repr(v: Any) -> str:
    """The literal form of a value, as the REPL echoes it: strings quoted."""
    t = type(v)
    if t is str:
        return string_literal(v)
    if t is list:
        return "[" + ", ".join(to_repr(x) for x in v) + "]"
    if t is dict:
        return "{" + ", ".join(f"{string_literal(_key(k))}: {to_repr(x)}"
                               for k, x in v.items()) + "}"
    return to_str(v)


def string_literal(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "$":
            out.append("\\$")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
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
        if ta is list:
            return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b, strict=True))
        if ta is dict:
            return a.keys() == b.keys() and all(equals(x, b[k]) for k, x in a.items())
        return bool(a == b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return bool(a == b)
    return False


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


# ---------------------------------------------------------------- JSON

def to_json(v: Any, pretty: bool = False) -> str:
    """Compact JSON (`{"k":2}`), or indented with pretty. Bytes and other non-JSON values are
    a runtime error."""
    try:
        if pretty:
            return json.dumps(v, ensure_ascii=False, allow_nan=False, indent=2)
        return json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise EvtRuntimeError("cannot convert to JSON: nested too deeply") from None
    except (TypeError, ValueError) as e:
        problem = _json_problem(v)
        if problem is None and "digits" in str(e):
            problem = "an integer has too many digits"
        raise EvtRuntimeError(f"cannot convert to JSON: {problem or e}") from None


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
            p = _json_problem(x, depth + 1)
            if p:
                return p
        return None
    if t in (str, int, float, bool) or v is None:
        return None
    return f"{a_type(v)} value has no JSON form"


def from_json(text: str | bytes) -> Any:
    """Parse JSON text. Raises ValueError with a readable message."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON: {e}") from None
