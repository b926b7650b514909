"""The conversion family: str int float bool type, UTF-8, hex and base64."""

from __future__ import annotations

import base64 as _b64
import binascii
import math
import re
from typing import Any

from lang.limits import MAX_INT_DIGITS
from lang.values import format_float, string_literal, to_str, type_name
from stdlib import args
from stdlib.registry import builtin

# Possessive quantifiers: a long run of digits that fails to match is refused in linear time
# (`[0-9]+\.?[0-9]*` backtracked quadratically on "111...1x").
_INT_TEXT = re.compile(r"[+-]?+(?:[0-9]++|0[xX][0-9a-fA-F]++)", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?+(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?+[0-9]++)?+",
                         re.ASCII)
_FLOAT_WORD = re.compile(r"[+-]?(?:inf|infinity|nan)", re.ASCII | re.IGNORECASE)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ASCII_SPACE = frozenset(" \t\n\r\x0b\x0c")  # what bytes.fromhex skips
_B64_URLSAFE = str.maketrans("-_", "+/")


def quoted(s: str, limit: int = 40) -> str:
    """A string as a literal for an error message, cut when long."""
    return string_literal(s[:limit]) + ("..." if len(s) > limit else "")


def _utf8(fn: str, s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise args.error(fn, f"string has a lone surrogate at index {e.start}") from None


@builtin("conversion")
def str_(v: Any) -> str:
    """The value as print shows it."""
    return to_str(v)


def _parse_int(text: str, fn: str = "int") -> int | None:
    if not _INT_TEXT.fullmatch(text):
        return None
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    hexadecimal = digits[:2] in ("0x", "0X")
    if hexadecimal:
        digits = digits[2:]
    if len(digits) > MAX_INT_DIGITS:
        # Python's limit for decimal text, whatever Python's setting; for hex too: reading
        # it is cheap, but showing the int is not (lang.limits)
        raise args.error(fn, f"too many digits: {len(digits):,} (the most is "
                                f"{MAX_INT_DIGITS})")
    return sign * int(digits, 16 if hexadecimal else 10)


@builtin("conversion")
def int_(v: Any) -> int:
    """An int from a number (truncated toward zero), a bool, or a decimal or 0x string."""
    t = args.one_of("int", 1, "v", v, (int, float, bool, str), "a number, bool or string")
    if type(t) is int or type(t) is bool:
        return int(t)
    if type(t) is float:
        if math.isinf(t) or math.isnan(t):
            raise args.error("int", f"cannot convert {format_float(t)} to an int")
        return int(t)
    text = t.strip()
    n = _parse_int(text)
    if n is not None:
        return n
    hint = " (use int(float(s)) to truncate)" if _FLOAT_TEXT.fullmatch(text) else ""
    raise args.error("int", f"{quoted(t)} is not an integer{hint}")


@builtin("conversion")
def float_(v: Any) -> float:
    """A float from a number, a bool, or a string ("2.5", "1e3", "0x1F", "inf", "nan")."""
    t = args.one_of("float", 1, "v", v, (int, float, bool, str), "a number, bool or string")
    if type(t) is str:
        # Decided: the same number text as int() and the language's literals: ASCII digits,
        # no "_" separators (Python's float() takes "1_0" and "١٢"; int() never did).
        text = t.strip()
        if _FLOAT_TEXT.fullmatch(text) or _FLOAT_WORD.fullmatch(text):
            return float(text)
        n = _parse_int(text, "float") if "x" in text.lower() else None
        if n is None:
            raise args.error("float", f"{quoted(t)} is not a number")
        t = n
    try:
        return float(t)
    except OverflowError:
        raise args.error("float", "int too large for a float") from None


@builtin("conversion")
def bool_(v: Any) -> bool:
    """The truth value: false for null, false, 0, 0.0, "", b"", [] and {}; true otherwise."""
    return bool(v)


@builtin("conversion")
def type_(v: Any) -> str:
    """The name of the value's type: null bool int float string bytes list map peer timer connection server."""
    return type_name(v)


@builtin("conversion")
def encode(s: Any) -> bytes:
    """The UTF-8 bytes of a string."""
    return _utf8("encode", args.string("encode", 1, "s", s))


@builtin("conversion")
def decode(b: Any) -> str:
    """The string of UTF-8 bytes; invalid UTF-8 is an error."""
    args.bytes_("decode", 1, "b", b)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise args.error("decode", f"not valid UTF-8 at byte {e.start}") from None


@builtin("conversion")
def hex_(v: Any) -> str:
    """Bytes as lowercase hex digits, two per byte; an int in base 16 ("-1f" when negative)."""
    t = args.one_of("hex", 1, "v", v, (bytes, int), "bytes or an int")
    return t.hex() if type(t) is bytes else format(t, "x")


@builtin("conversion")
def unhex(s: Any) -> bytes:
    """The bytes of a string of hex digit pairs; whitespace may separate the pairs."""
    args.string("unhex", 1, "s", s)
    try:
        return bytes.fromhex(s)
    except ValueError:
        pass
    half = False
    for i, ch in enumerate(s):
        if ch in _HEX_DIGITS:
            half = not half
        elif ch in _ASCII_SPACE:
            if half:
                raise args.error("unhex", f"whitespace inside a pair of hex digits at index {i}")
        else:
            raise args.error("unhex", f"bad hex digit {quoted(ch)} at index {i}")
    raise args.error("unhex", "odd number of hex digits")


@builtin("conversion")
def base64_(v: Any) -> str:
    """Standard base64 of bytes, or of a string's UTF-8 bytes."""
    t = args.one_of("base64", 1, "v", v, (bytes, str), "bytes or a string")
    data = _utf8("base64", t) if type(t) is str else t
    return _b64.b64encode(data).decode("ascii")


@builtin("conversion")
def unbase64(s: Any) -> bytes:
    """The bytes of a base64 string (standard or URL-safe alphabet, padding optional)."""
    args.string("unbase64", 1, "s", s)
    text = "".join(s.split()).translate(_B64_URLSAFE).rstrip("=")
    if len(text) % 4 == 1:
        raise args.error("unbase64", "not valid base64 (bad length)")
    try:
        return _b64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise args.error("unbase64", "not valid base64") from None
