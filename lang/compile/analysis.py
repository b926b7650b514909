"""Which bodies wait: found for the whole program before any body is compiled, so a
closure is async only when it must be."""

from __future__ import annotations

from typing import Any

from lang import ast as A

# ---------------------------------------------------------------- which bodies wait

WAITING_STMTS = (A.Wait, A.Start, A.Stop, A.Send, A.Broadcast, A.Close, A.Expect, A.Emit,
                  A.ChangeScene, A.While, A.For, A.WaitUntil, A.Open, A.Ping, A.Join, A.Leave,
                  A.Publish)


def _walk(node: Any) -> Any:
    """Every node under `node`, not entering timer blocks (they run as their own bodies)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, A.Timer):
            stack.append(n.interval)
            continue
        for name in getattr(n, "__slots__", ()):
            v = getattr(n, name, None)
            if isinstance(v, A.Node):
                stack.append(v)
            elif isinstance(v, tuple):
                stack.extend(x for x in v if isinstance(x, A.Node))


def functions_with(funcs: dict[Any, A.Func], kinds: tuple[type, ...], force: bool = False
                   ) -> set[Any]:
    """Keys of the functions whose body contains a node of `kinds`, or calls (transitively) a
    function that does. `funcs` maps a key (a name, or (scene, name) for a scene's function)
    to its declaration; a call inside a scene resolves to the scene's function first."""
    if force:
        return set(funcs)
    result: set[Any] = set()
    calls: dict[Any, set[str]] = {}
    for key, f in funcs.items():
        names: set[str] = set()
        for n in _walk(f.body):
            if isinstance(n, kinds):
                result.add(key)
            elif isinstance(n, A.Call):
                names.add(n.name)
        calls[key] = names
    changed = True
    while changed:
        changed = False
        for key, names in calls.items():
            if key not in result and any(
                    _resolve_call(funcs, key, n) in result for n in names):
                result.add(key)
                changed = True
    return result


def _resolve_call(funcs: dict[Any, A.Func], caller: Any, name: str) -> Any:
    scene = caller[0] if isinstance(caller, tuple) else None
    if scene is not None and (scene, name) in funcs:
        return (scene, name)
    return name if name in funcs else None


def body_has(node: A.Node, kinds: tuple[type, ...], flagged: set[Any], scene: str | None,
             funcs: dict[Any, A.Func]) -> bool:
    """Whether a body (not entering timer blocks) contains a node of `kinds` or calls a
    flagged function."""
    for n in _walk(node):
        if isinstance(n, kinds):
            return True
        if isinstance(n, A.Call) and _resolve_call(funcs, (scene,) if scene else None,
                                                   n.name) in flagged:
            return True
    return False


def waiting_functions(funcs: dict[Any, A.Func], force: bool = False) -> set[Any]:
    """Functions that must be async: they wait themselves or call one that does."""
    return functions_with(funcs, WAITING_STMTS, force)


# Statements (and `open`, which waits for a handshake) that may keep a handler waiting for
# long (while a receive handler waits, its connection would not be read if the handler ran in
# the reader): such handlers are queued.
BLOCKING_STMTS = (A.Wait, A.Expect, A.Emit, A.ChangeScene, A.WaitUntil, A.Open, A.Ping)
