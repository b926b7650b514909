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
