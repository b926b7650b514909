"""The json family: json_parse and json_stringify."""

from __future__ import annotations

from typing import Any

from lang.errors import EvtRuntimeError
from lang.values import from_json, to_json

from . import args, builtin


@builtin("json")
def json_parse(s: Any) -> Any:
    """The value of a JSON text (a string or UTF-8 bytes)."""
    args.one_of("json_parse", 1, "s", s, (str, bytes), "a string or bytes")
    try:
        return from_json(s)
    except RecursionError:
        raise args.error("json_parse", "not JSON: nested too deeply") from None
    except ValueError as e:
        message = str(e)
        if "recursion" in message:
            message = "not JSON: nested too deeply"
        elif "integer string conversion" in message:
            message = "not JSON: a number has too many digits"
        elif not message.startswith("not JSON"):
            message = f"not JSON: {message}"
        raise args.error("json_parse", message) from None


@builtin("json")
def json_stringify(v: Any, pretty: Any = False) -> str:
    """Compact JSON text of a value, or indented when pretty is true."""
    args.one_of("json_stringify", 2, "pretty", pretty, (bool,), "a bool")
    try:
        return to_json(v, pretty)
    except EvtRuntimeError as e:
        raise args.error("json_stringify", e.message) from None
