"""The value of a constant expression, for checks that judge literals and for `--set`."""

from __future__ import annotations

from typing import Any

from lang import ast as A

NOT_LITERAL = object()  # what literal_value gives for an expression that is not constant


def literal_value(e: A.Expr) -> Any:
    """The value of a constant expression (literals, lists and maps of them), or NOT_LITERAL."""
    if isinstance(e, A.Const):
        return e.value
    if isinstance(e, A.ListLit):
        items = [literal_value(x) for x in e.items]
        return NOT_LITERAL if any(x is NOT_LITERAL for x in items) else items
    if isinstance(e, A.MapLit):
        values = [literal_value(x) for x in e.values]
        if any(x is NOT_LITERAL for x in values):
            return NOT_LITERAL
        return dict(zip(e.keys, values, strict=True))
    return NOT_LITERAL
