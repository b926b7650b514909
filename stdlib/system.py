"""The system family: the environment. (`args` is a variable the interpreter provides.)"""

from __future__ import annotations

import os
from typing import Any

from lang.values import os_text
from stdlib import args
from stdlib.registry import builtin


@builtin("system")
def env(name: Any, default: Any = None) -> Any:
    """The value of an environment variable (not UTF-8: U+FFFD), or default when it is not set."""
    args.string("env", 1, "name", name)
    try:
        value = os.environ.get(name)
    except (UnicodeError, ValueError):  # a name no environment can hold
        return default
    if value is None:
        return default
    return os_text(value)  # Decided: bytes that are not UTF-8 read as U+FFFD, as in Node


@builtin("system")
def worker() -> int:
    """This process's index among the workers of `evt run --workers N` (0 when run alone)."""
    # Decided: EVT_WORKER, which --workers sets for each worker; a value that is not a
    # number reads as 0, as when run alone
    try:
        index = int(os.environ.get("EVT_WORKER", "0"))
    except ValueError:
        return 0
    return max(index, 0)
