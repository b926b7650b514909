"""The strings family: length, case, trimming, splitting, searching and printf-style format."""

from __future__ import annotations

import re
from typing import Any

from lang.limits import MAX_INT_DIGITS, MAX_RESULT, int_too_long
from lang.values import equals, int_text, string_literal, to_str
from stdlib import args
from stdlib.registry import builtin

MAX_WIDTH = 10_000  # format: the largest width or precision accepted


def _checked_size(fn: str, size: int) -> None:
    if size > MAX_RESULT:
        raise args.error(fn, "result too large")


@builtin("strings")
def len_(v: Any) -> int:
    """The length of a string (in code points), bytes, list or map."""
    args.one_of("len", 1, "v", v, (str, bytes, list, dict), "a string, bytes, list or map")
    return len(v)


@builtin("strings")
def upper(s: Any) -> str:
    """The string in upper case."""
    return args.string("upper", 1, "s", s).upper()


@builtin("strings")
def lower(s: Any) -> str:
    """The string in lower case."""
    return args.string("lower", 1, "s", s).lower()


@builtin("strings")
def trim(s: Any) -> str:
    """The string without whitespace at both ends."""
    return args.string("trim", 1, "s", s).strip()


@builtin("strings")
def split(s: Any, sep: Any = None) -> list[str]:
    """Split a string at sep, or at runs of whitespace when sep is null."""
    args.string("split", 1, "s", s)
    if sep is None:
        return s.split()
    args.string("split", 2, "sep", sep)
    if not sep:
        raise args.error("split", "separator must not be empty")
    return s.split(sep)


@builtin("strings")
def join(items: Any, sep: Any = "") -> str:
    """Join the items of a list, each converted as str() does, with sep between them."""
    args.list_("join", 1, "items", items)
    args.string("join", 2, "sep", sep)
    _checked_size("join", len(sep) * max(len(items) - 1, 0))
    parts = []
    size = 0
    for x in items:  # counted as they come: a thousand copies of one big list stop early
        part = to_str(x)
        size += len(part) + len(sep)
        _checked_size("join", size - len(sep))
        parts.append(part)
    return sep.join(parts)


@builtin("strings")
def replace(s: Any, old: Any, new: Any) -> str:
    """s with every occurrence of old replaced by new."""
    args.string("replace", 1, "s", s)
    args.string("replace", 2, "old", old)
    args.string("replace", 3, "new", new)
    count = s.count(old)
    _checked_size("replace", len(s) + count * (len(new) - len(old)))
    return s.replace(old, new)


@builtin("strings")
def contains(s: Any, sub: Any) -> bool:
    """Whether a string holds a substring, a list holds a value, or a map holds a key."""
    t = args.one_of("contains", 1, "s", s, (str, list, dict), "a string, list or map")
    if type(t) is str:
        return args.string("contains", 2, "sub", sub) in t
    if type(t) is list:
        return any(equals(sub, x) for x in t)
    try:
        return sub in t
    except TypeError:  # an unhashable key (a list or map) is never a key
        return False


@builtin("strings")
def starts_with(s: Any, prefix: Any) -> bool:
    """Whether s begins with prefix."""
    args.string("starts_with", 1, "s", s)
    return s.startswith(args.string("starts_with", 2, "prefix", prefix))


@builtin("strings")
def ends_with(s: Any, suffix: Any) -> bool:
    """Whether s ends with suffix."""
    args.string("ends_with", 1, "s", s)
    return s.endswith(args.string("ends_with", 2, "suffix", suffix))


@builtin("strings")
def find(s: Any, sub: Any) -> int:
    """The index of the first occurrence of sub in s, or -1."""
    args.string("find", 1, "s", s)
    return s.find(args.string("find", 2, "sub", sub))


@builtin("strings")
def substr(s: Any, start: Any, length: Any = None) -> str:
    """length characters of s from start (negative: from the end); all the rest if null."""
    args.string("substr", 1, "s", s)
    begin = args.integer("substr", 2, "start", start)
    if begin < 0:
        begin = max(len(s) + begin, 0)
    begin = min(begin, len(s))
    if length is None:
        return s[begin:]
    count = args.integer("substr", 3, "length", length)
    if count < 0:
        raise args.error("substr", "length must not be negative")
    return s[begin:begin + min(count, len(s))]


@builtin("strings")
def repeat(s: Any, n: Any) -> str:
    """s repeated n times."""
    args.string("repeat", 1, "s", s)
    count = args.integer("repeat", 2, "n", n)
    if count < 0:
        raise args.error("repeat", "count must not be negative")
    if not s:
        return ""  # and no huge count reaches Python's repetition
    _checked_size("repeat", len(s) * count)
    return s * count


# ---------------------------------------------------------------- format

_DIRECTIVE = re.compile(r"%([-+ 0#]*)([0-9]*)(?:\.([0-9]*))?([a-zA-Z%]?)", re.ASCII)
_INT_CODES = "dioxX"
_FLOAT_CODES = "feEgG"


def _format_one(index: int, code: str, flags: str, width: str, prec: str | None, v: Any
                ) -> str:
    spec = "%" + flags + width + ("." + prec if prec is not None else "")
    if code == "s":
        return (spec + "s") % to_str(v)
    if code in _INT_CODES:
        if type(v) is not int and not (type(v) is float and v.is_integer()):
            raise args.fail("format", index, "%" + code, "an int", v)
        n = int(v)
        if code == "o" and "#" in flags:
            # Decided: C's alternate octal form, a leading 0 ("010"), not Python's "0o10"
            digits = format(abs(n), "o")
            digits = digits if digits.startswith("0") else "0" + digits
            return _pad(n < 0, digits, flags, width, prec)
        if code in "di" and int_too_long(n):
            raise args.error("format", f"argument {index} has more than {MAX_INT_DIGITS} "
                                       f"digits, too many for %{code} (%x shows it in hex)")
        if code in "di" and n.bit_length() > 10_000:  # near Python's digit limit for str()
            return _pad(n < 0, int_text(abs(n)), flags, width, prec)
        return (spec + ("d" if code == "i" else code)) % n
    args.number("format", index, "%" + code, v)
    try:
        return (spec + code) % v
    except OverflowError:
        raise args.error("format", f"argument {index} is too large for %{code}") from None


def _pad(negative: bool, digits: str, flags: str, width: str, prec: str | None) -> str:
    """An int's digits laid out as printf does: precision (minimum digits), sign, width."""
    if prec:
        digits = digits.rjust(int(prec), "0")
    sign = "-" if negative else "+" if "+" in flags else " " if " " in flags else ""
    size = int(width or 0)
    if "-" in flags:
        return (sign + digits).ljust(size)
    if "0" in flags and prec is None:
        return sign + digits.rjust(size - len(sign), "0")
    return (sign + digits).rjust(size)


@builtin("strings")
def format_(pattern: Any, *values: Any) -> str:
    """printf-style formatting: %d %i %s %f %.2f %x %X %o %e %g %% with flags and width."""
    args.string("format", 1, "pattern", pattern)
    pieces: list[tuple[str, str, str, str | None] | str] = []
    pos = 0
    for m in _DIRECTIVE.finditer(pattern):
        pieces.append(pattern[pos:m.start()])
        pos = m.end()
        flags, width, prec, code = m.groups()
        if not code:
            if m.end() < len(pattern):  # "%*d", "%-!": a character no directive has
                bad = m.group(0) + pattern[m.end()]
                raise args.error("format", f"unknown directive {string_literal(bad)}")
            raise args.error("format", f"incomplete directive {string_literal(m.group(0))} at the end")
        if code == "%":
            if m.group(0) != "%%":
                raise args.error("format", f"bad directive {string_literal(m.group(0))}")
            pieces.append("%")
            continue
        if code != "s" and code not in _INT_CODES and code not in _FLOAT_CODES:
            raise args.error("format", f"unknown directive {string_literal(m.group(0))}")
        if len(width) > 5 or int(width or 0) > MAX_WIDTH or (prec and (
                len(prec) > 5 or int(prec) > MAX_WIDTH)):
            raise args.error("format", f"width or precision too large in {string_literal(m.group(0))}")
        pieces.append((code, flags, width, prec))
    pieces.append(pattern[pos:])
    needed = sum(1 for p in pieces if type(p) is tuple)
    if needed != len(values):
        plural = "value" if needed == 1 else "values"
        raise args.error("format", f"pattern needs {needed} {plural}, got {len(values)}")
    out: list[str] = []
    it = iter(values)
    index = 1
    size = 0
    for p in pieces:
        if type(p) is str:
            out.append(p)
        else:
            code, flags, width, prec = p
            index += 1
            out.append(_format_one(index, code, flags, width, prec, next(it)))
        size += len(out[-1])
        _checked_size("format", size)  # as it grows: many copies of one big list stop early
    return "".join(out)
