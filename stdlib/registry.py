"""The registry of built-ins and the @builtin decorator (a module of its own, so that the
families import it without importing the package that imports them)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    family: str
    params: str
    doc: str
    context: bool

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args}"
        if self.min_args == self.max_args:
            return str(self.min_args)
        return f"{self.min_args} to {self.max_args}"


REGISTRY: dict[str, Builtin] = {}


def builtin(family: str, name: str | None = None, *, context: bool = False
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as the evt built-in `name` (default: the function's name)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        evt_name = name or fn.__name__.rstrip("_")
        params = list(inspect.signature(fn).parameters.values())
        if context:
            params = params[1:]
        required = sum(1 for p in params if p.kind is p.POSITIONAL_OR_KEYWORD
                       and p.default is p.empty)
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        shown = ", ".join(
            p.name if p.default is p.empty else f"{p.name}?" for p in positional)
        if variadic:
            star = next(p for p in params if p.kind is p.VAR_POSITIONAL)
            shown = f"{shown}, {star.name}..." if shown else f"{star.name}..."
        if evt_name in REGISTRY:
            raise RuntimeError(f"built-in {evt_name} registered twice")
        REGISTRY[evt_name] = Builtin(
            evt_name, fn, required, None if variadic else len(positional), family, shown,
            inspect.getdoc(fn) or "", context)
        return fn

    return register
