"""The system family: the environment. (`args` is a variable the interpreter provides.)"""

from __future__ import annotations

import os
from typing import Any

from . import args, builtin


@builtin("system")
def env(name: Any, default: Any = None) -> Any:
    """The value of an environment variable, or default when it is not set."""
    args.string("env", 1, "name", name)
    try:
        return os.environ.get(name, default)
    except (UnicodeError, ValueError):  # a name no environment can hold
        return default
