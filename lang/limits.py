"""The limits that keep a script from crashing the interpreter, in one place.

A script can nest and recurse; it must get a diagnostic or a runtime error for it, never a
Python RecursionError traceback.
"""

from __future__ import annotations

import sys

# evt calls (functions, emit, scene changes) nest at most this deep: past it, a runtime error
MAX_DEPTH = 400
# brackets and blocks open at once in a source: past it, a syntax error
MAX_NESTING = 200
# Python's own limit, raised so that the two above are always reached first (the checker
# and the compiler walk the tree recursively; evt calls take a few Python frames each)
PY_RECURSION_LIMIT = 12000


def raise_recursion_limit() -> None:
    if sys.getrecursionlimit() < PY_RECURSION_LIMIT:
        sys.setrecursionlimit(PY_RECURSION_LIMIT)

# An int has at most this many digits as text, either way: a decimal or hex literal, int()
# of a string, and print / interpolation / str() of an int. Python's own limit for decimal
# text (sys.get_int_max_str_digits), applied here whatever Python's setting: turning an int
# into decimal text takes time quadratic in its length, and a long hex number is cheap to
# read but then as slow to show (600 KB of hex digits took 7.6 s to print, and a signal
# waits for that). hex(n) shows an int of any size (that conversion is linear).
MAX_INT_DIGITS = 4300
# bits past which an int surely has more than MAX_INT_DIGITS decimal digits: an int of b
# bits is at least 2**(b-1), which has more than (b-1) * log10(2) digits
_SURELY_TOO_LONG_BITS = int(MAX_INT_DIGITS / 0.30102999566398120) + 2
_FIRST_TOO_LONG = 10 ** MAX_INT_DIGITS

# An int that '*' or pow() computes has at most this many digits: past it, a runtime error
# (and no multiplication is started that would pass it). Squaring a number again and again
# doubles its length each time: the 28th squaring of 3 ran for over ten minutes in one C
# call, deaf to SIGTERM.
MAX_PRODUCT_DIGITS = 10_000
# product bits at or below which a product surely has fewer digits (2**33000 < 10**9934):
# the compiler's fast path multiplies without further checks up to here
PRODUCT_BITS_OK = 33_000
_FIRST_TOO_LARGE_PRODUCT = 10 ** MAX_PRODUCT_DIGITS
# a product of ints of a and b bits is at least 2**(a + b - 2): from here it is too large
_PRODUCT_BITS_TOO_LARGE = _FIRST_TOO_LARGE_PRODUCT.bit_length() + 1


def product_too_large(a: int, b: int) -> bool:
    """Whether a * b has more than MAX_PRODUCT_DIGITS digits (the product is computed only
    when it cannot be much larger than that)."""
    bits = a.bit_length() + b.bit_length()
    if bits <= PRODUCT_BITS_OK:
        return False
    if bits - 2 >= _PRODUCT_BITS_TOO_LARGE:
        return True
    return abs(a * b) >= _FIRST_TOO_LARGE_PRODUCT


# A string, bytes or list that an operation builds ('+', interpolation, repeat, join,
# replace, format) has at most this many characters, bytes or items: past it, a runtime
# error (a string doubled forty times was a MemoryError).
MAX_RESULT = 100 * 1024 * 1024


# Python's own check is the fast one (str() of a small int pays nothing for it): make it
# evt's, whatever PYTHONINTMAXSTRDIGITS says
sys.set_int_max_str_digits(MAX_INT_DIGITS)


def int_too_long(n: int) -> bool:
    """Whether an int has more than MAX_INT_DIGITS decimal digits (checked without turning
    a huge one into text)."""
    bits = n.bit_length()
    if bits <= 14_000:  # at most 4,215 digits
        return False
    if bits > _SURELY_TOO_LONG_BITS:
        return True
    return abs(n) >= _FIRST_TOO_LONG
