"""The math family: abs min max round floor ceil sqrt pow clamp random random_int."""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from typing import Any

from lang.limits import MAX_PRODUCT_DIGITS
from lang.values import format_float, type_name
from stdlib import args
from stdlib.registry import builtin

MAX_DIGITS = MAX_PRODUCT_DIGITS  # pow: a larger int result is an error, as for '*'


def _numbers(fn: str, given: tuple[Any, ...]) -> list[int | float]:
    """The numbers of min/max: several arguments, or the items of one list argument."""
    if len(given) == 1 and type(given[0]) is list:
        items = given[0]
        if not items:
            raise args.error(fn, "the list is empty")
        for i, v in enumerate(items):
            if type(v) is not int and type(v) is not float:
                raise args.error(fn, f"list item at index {i} must be a number, got {type_name(v)}")
        return items
    for i, v in enumerate(given):
        args.number(fn, i + 1, "x" if i == 0 else "more", v)
    return list(given)


def _finite(fn: str, x: float) -> None:
    if math.isinf(x) or math.isnan(x):
        raise args.error(fn, f"cannot convert {format_float(x)} to an int")


@builtin("math")
def abs_(x: Any) -> int | float:
    """The absolute value of a number."""
    return abs(args.number("abs", 1, "x", x))


def _extreme(fn: str, given: tuple[Any, ...], pick: Callable[..., Any]) -> int | float:
    numbers = _numbers(fn, given)
    # Decided: nan wins, as in JavaScript's Math.min/max (Python's answer depended on where
    # the nan stood: max(nan, 1) was nan but max(1, nan) was 1).
    for v in numbers:
        if v != v:
            return v
    return pick(numbers)


@builtin("math")
def min_(x: Any, *more: Any) -> int | float:
    """The smallest of several numbers, or of the numbers in one list (nan if any is nan)."""
    return _extreme("min", (x, *more), min)


@builtin("math")
def max_(x: Any, *more: Any) -> int | float:
    """The largest of several numbers, or of the numbers in one list (nan if any is nan)."""
    return _extreme("max", (x, *more), max)


def _round_int(x: int, digits: int) -> int:
    if digits >= 0:
        return x
    if -digits > x.bit_length():  # |x| < 10**-digits / 2
        return 0
    q = 10 ** -digits
    r = (abs(x) + q // 2) // q * q
    return r if x >= 0 else -r


def _to_float(fn: str, n: int) -> float:
    try:
        return float(n)
    except OverflowError:
        raise args.error(fn, "result too large for a float") from None


@builtin("math")
def round_(x: Any, digits: Any = 0) -> int | float:
    """x rounded to digits decimals, halves away from zero: an int when digits is 0."""
    args.number("round", 1, "x", x)
    d = args.integer("round", 2, "digits", digits)
    if type(x) is int:
        n = _round_int(x, d)
        return n if d == 0 else _to_float("round", n)
    if d == 0:
        _finite("round", x)
    if not math.isfinite(x) or d > 400:
        return x
    if d < -400:
        return math.copysign(0.0, x)
    from decimal import ROUND_HALF_UP, Context, Decimal  # here: 2 ms of every start

    # a precision enough for any float at any digits in [-400, 400]
    q = Decimal(repr(x)).quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_UP,
                                  context=Context(prec=1000))
    if d == 0:
        return int(q)
    r = float(q)
    if math.isinf(r):  # round(1.7976931348623157e308, -308) is 2e308
        raise args.error("round", "result too large for a float")
    return r


@builtin("math")
def floor(x: Any) -> int:
    """The largest int not greater than x."""
    args.number("floor", 1, "x", x)
    if type(x) is int:
        return x
    _finite("floor", x)
    return math.floor(x)


@builtin("math")
def ceil(x: Any) -> int:
    """The smallest int not less than x."""
    args.number("ceil", 1, "x", x)
    if type(x) is int:
        return x
    _finite("ceil", x)
    return math.ceil(x)


@builtin("math")
def sqrt(x: Any) -> float:
    """The square root of a non-negative number (a float)."""
    args.number("sqrt", 1, "x", x)
    if x < 0:
        raise args.error("sqrt", "cannot take the square root of a negative number")
    try:
        return math.sqrt(x)
    except OverflowError:  # an int too large for a float: its root may still fit one
        return _to_float("sqrt", math.isqrt(x))


@builtin("math")
def pow_(x: Any, y: Any) -> int | float:
    """x to the power y: an int for an int to a non-negative int power, else a float."""
    args.number("pow", 1, "x", x)
    args.number("pow", 2, "y", y)
    if type(x) is int and type(y) is int and y >= 0:
        if abs(x) > 1 and (y > 4 * MAX_DIGITS or y * math.log10(abs(x)) > MAX_DIGITS):
            raise args.error("pow", "result too large")
        return x ** y
    if x == 0 and y < 0:
        raise args.error("pow", "zero to a negative power")
    try:
        fx, fy = float(x), float(y)
    except OverflowError:  # an int too large for a float: the result may still fit one
        return _huge_pow(x, y)
    try:
        return math.pow(fx, fy)
    except OverflowError:
        raise args.error("pow", "result too large") from None
    except ValueError:
        raise args.error("pow", "negative base with a fractional exponent") from None


def _huge_pow(x: int | float, y: int | float) -> float:
    """x ** y as a float when x or y is an int too large for a float: math.pow would call
    pow(2, -10**400), pow(0.5, 10**400) or pow(10**400, 0.5) "too large"."""
    if y != y:
        return math.nan
    if type(y) is float and math.isinf(y):
        y = 2**1100 if y > 0 else -(2**1100)  # as large as the int case below: same answers
    negative = x < 0 or (type(x) is float and math.copysign(1.0, x) < 0)  # -0.0 too
    if negative and type(y) is float and not y.is_integer():
        raise args.error("pow", "negative base with a fractional exponent")
    sign = -1.0 if negative and int(y) % 2 == 1 else 1.0
    if abs(y) > 2**1000:  # |x| ** y is 1, or far beyond a float either way
        size = abs(x)
        if size == 1:
            return sign
        if (size > 1) == (y > 0):
            raise args.error("pow", "result too large")
        return math.copysign(0.0, sign)
    # x is an int too large for a float: x = m * 2**shift with m a float near 2**64, and
    # |x| ** y = m ** y * 2 ** (shift * y), the exponent kept exact.
    from fractions import Fraction

    shift = abs(x).bit_length() - 64
    q = Fraction(y).denominator
    if q <= 64:  # 2 ** (shift * y) a whole power of two for y = 0.5, 2.5...: exact
        shift -= shift % q
    m = float(abs(x) >> shift)  # at most 128 bits: a float
    e = Fraction(y) * shift
    k = math.floor(e)
    try:
        r = math.pow(m, y) * 2.0 ** float(e - k)
        return sign * math.ldexp(r, k)
    except OverflowError:
        raise args.error("pow", "result too large") from None


@builtin("math")
def clamp(x: Any, lo: Any, hi: Any) -> int | float:
    """x limited to the range lo..hi."""
    args.number("clamp", 1, "x", x)
    args.number("clamp", 2, "lo", lo)
    args.number("clamp", 3, "hi", hi)
    if lo != lo or hi != hi:
        raise args.error("clamp", "lo and hi must not be nan")
    if lo > hi:
        raise args.error("clamp", "lo is greater than hi")
    return lo if x < lo else hi if x > hi else x


@builtin("math")
def random_() -> float:
    """A random float in [0, 1)."""
    return _random.random()


@builtin("math")
def random_int(lo: Any, hi: Any) -> int:
    """A random int from lo to hi, both included."""
    a = args.integer("random_int", 1, "lo", lo)
    b = args.integer("random_int", 2, "hi", hi)
    if a > b:
        raise args.error("random_int", "lo is greater than hi")
    return _random.randint(a, b)
