"""The evt standard library: built-in functions by family, and event sources.

Rules of this package:
- A built-in is a plain Python function registered with @builtin; its evt arity comes from
  its Python signature (defaults make arguments optional, *args makes it variadic), so the
  checker can reject a wrong argument count before anything runs.
- A built-in checks its argument types itself, with the helpers in stdlib.args, and raises
  EvtRuntimeError naming the function, the argument and the type it got. The interpreter adds
  the source position.
- Built-ins see only evt values. Those that need the running program (the websocket family)
  take it as their first parameter, `rt`, and are registered with context=True.
"""

from __future__ import annotations

from stdlib.registry import REGISTRY, Builtin, builtin

__all__ = ["REGISTRY", "Builtin", "builtin", "load"]


def load() -> dict[str, Builtin]:
    """Import every family module (each registers its functions) and return the registry.
    (Every time: a module imported alone, as a test may, must not leave it partial; an
    import already done costs a dictionary lookup.)"""
    from stdlib import (  # noqa: F401
        conversion,
        jsonfns,
        lists,
        mathfns,
        strings,
        system,
        timefns,
        urls,
        websocket,
    )
    return REGISTRY
