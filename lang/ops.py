"""The operations of evt expressions on values: the general (slow) paths.

Rules of this module:
- The compiler inlines the common case (two ints, a list and an int index) and calls these
  for everything else; each either returns the evt result or raises EvtRuntimeError with the
  span of the operator and a message in evt's terms (never a Python type name).
"""

from __future__ import annotations

import math
from typing import Any

from lang.ast import Span
from lang.errors import EvtRuntimeError
from lang.limits import MAX_PRODUCT_DIGITS, MAX_RESULT, product_too_large
from lang.values import a_type, brief, contains, equals, type_name

_NUM = (int, float)


def _is_num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def err(message: str, span: Span) -> EvtRuntimeError:
    return EvtRuntimeError(message, span)


def _too_large(span: Span) -> EvtRuntimeError:
    return err("the result is too large for a float (an int this big cannot mix with floats)",
               span)


_INF = math.inf


def _overflow(r: Any, a: Any, b: Any, op: str, span: Span) -> Any:
    """r, the float result of a op b, unless it overflowed: inf from finite numbers is a
    runtime error, as pow(10.0, 400) is (Python's float arithmetic gives inf silently for
    + - * /, and OverflowError for **)."""
    if (r == _INF or r == -_INF) and not (type(a) is float and math.isinf(a)) \
            and not (type(b) is float and math.isinf(b)):
        raise err(f"the result of '{op}' is too large for a float", span)
    return r


def _too_long(a: Any, b: Any, span: Span) -> EvtRuntimeError:
    unit = {str: "characters", bytes: "bytes", list: "items"}[type(a)]
    return err(f"the result of '+' is too large: {len(a) + len(b):,} {unit} (the most is "
               f"{MAX_RESULT:,})", span)


def add(a: Any, b: Any, span: Span) -> Any:
    ta, tb = type(a), type(b)
    if _is_num(a) and _is_num(b):
        try:
            r = a + b
        except OverflowError:
            raise _too_large(span) from None
        return _overflow(r, a, b, "+", span) if type(r) is float else r
    if ta is tb and ta in (str, list, bytes):
        if len(a) + len(b) > MAX_RESULT:
            raise _too_long(a, b, span)
        return a + b
    if (ta is str and tb in (int, float, bool)) or (tb is str and ta in (int, float, bool)) \
            or (ta is str and b is None) or (tb is str and a is None):
        raise err(f"cannot add {type_name(a)} and {type_name(b)}; to build a string, use "
                  'interpolation: "${a}${b}", or str()', span)
    raise err(f"cannot add {type_name(a)} and {type_name(b)}", span)


def sub(a: Any, b: Any, span: Span) -> Any:
    if _is_num(a) and _is_num(b):
        try:
            r = a - b
        except OverflowError:
            raise _too_large(span) from None
        return _overflow(r, a, b, "-", span) if type(r) is float else r
    raise err(f"cannot subtract {type_name(b)} from {type_name(a)}", span)


def mul(a: Any, b: Any, span: Span) -> Any:
    if type(a) is int and type(b) is int:
        if product_too_large(a, b):
            raise err(f"the result of '*' is too large: an int of more than "
                      f"{MAX_PRODUCT_DIGITS:,} digits", span)
        return a * b
    if _is_num(a) and _is_num(b):
        try:
            r = a * b
        except OverflowError:
            raise _too_large(span) from None
        return _overflow(r, a, b, "*", span) if type(r) is float else r
    if type(a) is str or type(b) is str:
        raise err(f"cannot multiply {type_name(a)} and {type_name(b)}; "
                  "to repeat a string, use repeat(s, n)", span)
    raise err(f"cannot multiply {type_name(a)} and {type_name(b)}", span)


def div(a: Any, b: Any, span: Span) -> Any:
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise err("division by zero", span)
        try:
            r = a / b
        except OverflowError:
            raise err("the result of '/' is too large for a float", span) from None
        return _overflow(r, a, b, "/", span)
    raise err(f"cannot divide {type_name(a)} by {type_name(b)}", span)


def mod(a: Any, b: Any, span: Span) -> Any:
    if _is_num(a) and _is_num(b):
        if b == 0:
            raise err("remainder by zero ('%' with 0 on the right)", span)
        try:
            return a % b
        except OverflowError:
            raise _too_large(span) from None
    raise err(f"cannot take the remainder of {type_name(a)} by {type_name(b)}", span)


def neg(a: Any, span: Span) -> Any:
    if _is_num(a):
        return -a
    raise err(f"cannot negate {type_name(a)}", span)


def pos(a: Any, span: Span) -> Any:
    if _is_num(a):
        return a
    raise err(f"unary '+' needs a number, got {type_name(a)}", span)


def _ordered(a: Any, b: Any, op: str, span: Span) -> None:
    ta, tb = type(a), type(b)
    if _is_num(a) and _is_num(b):
        return
    if ta is tb and ta in (str, bytes):
        return
    raise err(f"cannot compare {type_name(a)} and {type_name(b)} with '{op}'", span)


def lt(a: Any, b: Any, span: Span) -> bool:
    _ordered(a, b, "<", span)
    return a < b


def le(a: Any, b: Any, span: Span) -> bool:
    _ordered(a, b, "<=", span)
    return a <= b


def gt(a: Any, b: Any, span: Span) -> bool:
    _ordered(a, b, ">", span)
    return a > b


def ge(a: Any, b: Any, span: Span) -> bool:
    _ordered(a, b, ">=", span)
    return a >= b


def eq(a: Any, b: Any, span: Span) -> bool:
    try:
        return equals(a, b)
    except EvtRuntimeError as e:
        e.span = span
        raise


def ne(a: Any, b: Any, span: Span) -> bool:
    return not eq(a, b, span)


def in_(a: Any, b: Any, span: Span) -> bool:
    try:
        return contains(b, a)
    except EvtRuntimeError as e:
        e.span = span
        raise


def not_in(a: Any, b: Any, span: Span) -> bool:
    return not in_(a, b, span)


BINARY = {"+": add, "-": sub, "*": mul, "/": div, "%": mod, "<": lt, "<=": le, ">": gt,
          ">=": ge, "==": eq, "!=": ne, "in": in_, "not in": not_in}


# ---------------------------------------------------------------- element access


def _shown_key(k: Any) -> str:
    return f'"{k}"' if type(k) is str else brief(k)


def index(obj: Any, key: Any, span: Span) -> Any:
    t = type(obj)
    if t is dict:
        try:
            return obj[key]
        except KeyError:
            raise err(f"no key {_shown_key(key)} in this map{_keys_hint(obj)}; "
                      "get(m, key, default) returns a default instead", span) from None
        except TypeError:
            raise err(f"{a_type(key)} cannot be a map key", span) from None
    if t is list or t is str or t is bytes:
        if type(key) is not int:
            raise err(f"{a_type(obj)} index must be an int, got {type_name(key)}", span)
        try:
            return obj[key]
        except IndexError:
            raise err(f"index {brief(key)} is out of range for {a_type(obj)} of length "
                      f"{len(obj)}", span) from None
    getter = getattr(obj, "evt_get", None)
    if getter is not None and type(key) is str:
        return getter(key, span)
    raise err(f"cannot index {a_type(obj)}", span)


def _keys_hint(m: dict) -> str:
    if not m:
        return " (it is empty)"
    keys = list(m)[:8]
    more = ", ..." if len(m) > 8 else ""
    return " (keys: " + ", ".join(_shown_key(k) for k in keys) + more + ")"


def attr(obj: Any, name: str, span: Span) -> Any:
    if type(obj) is dict:
        try:
            return obj[name]
        except KeyError:
            raise err(f"no key \"{name}\" in this map{_keys_hint(obj)}", span) from None
    getter = getattr(obj, "evt_get", None)
    if getter is not None:
        return getter(name, span)
    raise err(f"{a_type(obj)} has no fields ('.{name}')", span)


def set_index(obj: Any, key: Any, value: Any, span: Span) -> None:
    t = type(obj)
    if t is dict:
        try:
            obj[key] = value
        except TypeError:
            raise err(f"{a_type(key)} cannot be a map key", span) from None
        return
    if t is list:
        if type(key) is not int:
            raise err(f"a list index must be an int, got {type_name(key)}", span)
        try:
            obj[key] = value
        except IndexError:
            raise err(f"index {brief(key)} is out of range for a list of length {len(obj)}; "
                      "push(xs, v) adds at the end", span) from None
        return
    setter = getattr(obj, "evt_set", None)
    if setter is not None and type(key) is str:
        setter(key, value, span)
        return
    if t is str:
        raise err("strings cannot be changed in place; build a new one", span)
    raise err(f"cannot assign into {a_type(obj)}", span)


def set_attr(obj: Any, name: str, value: Any, span: Span) -> None:
    if type(obj) is dict:
        obj[name] = value
        return
    setter = getattr(obj, "evt_set", None)
    if setter is not None:
        setter(name, value, span)
        return
    raise err(f"cannot set a field on {a_type(obj)}", span)


# ---------------------------------------------------------------- iteration and checks


def iterate(v: Any, span: Span) -> Any:
    """What `for x in v` walks: list items, map keys (a snapshot), string characters, bytes."""
    t = type(v)
    if t is list or t is range:
        return v
    if t is dict:
        return list(v)
    if t is str or t is bytes:
        return v
    raise err(f"cannot loop over {a_type(v)}", span)


def pairs(v: Any, span: Span) -> Any:
    """What `for k, v in x` walks: a map's key-value pairs, or a list of two-item lists."""
    if type(v) is dict:
        return list(v.items())
    if type(v) is list:
        out = []
        for item in v:
            if type(item) is not list or len(item) != 2:
                raise err("'for a, b in xs' needs a map or a list of two-item lists, found "
                          f"{a_type(item)}" + (f" of length {len(item)}"
                                                     if type(item) is list else ""), span)
            out.append(item)
        return out
    raise err(f"'for a, b in ...' needs a map or a list of pairs, got {type_name(v)}", span)


def duration(v: Any, what: str, span: Span, allow_zero: bool = True) -> float:
    t = type(v)
    if (t is not int and t is not float) or (t is float and math.isnan(v)):
        raise err(f"{what} needs a duration (seconds, e.g. 250ms or 2s), got {type_name(v)}",
                  span)
    if v < 0 or (v == 0 and not allow_zero):
        raise err(f"{what} needs a {'positive' if not allow_zero else 'non-negative'} "
                  f"duration, got {brief(v)}", span)
    if v > 1e9:  # inf, or an int too large for a float: "never", about 32 years
        return 1e9
    return float(v)
