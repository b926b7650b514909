"""The json family: json_parse and json_stringify."""

from __future__ import annotations

from typing import Any

from lang.errors import EvtRuntimeError
from lang.values import json_error, parse_json, to_json
from stdlib import args
from stdlib.registry import builtin


@builtin("json")
def json_parse(s: Any) -> Any:
    """The value of a JSON text (a string or UTF-8 bytes); NaN and Infinity are not JSON."""
    args.one_of("json_parse", 1, "s", s, (str, bytes), "a string or bytes")
    try:
        return parse_json(s)
    except (ValueError, RecursionError) as e:
        raise args.error("json_parse", f"not JSON: {json_error(e)}") from None


@builtin("json")
def json_stringify(v: Any, pretty: Any = False) -> str:
    """Compact JSON text of a value, or indented when pretty is true."""
    args.one_of("json_stringify", 2, "pretty", pretty, (bool,), "a bool")
    try:
        return to_json(v, pretty)
    except EvtRuntimeError as e:
        raise args.error("json_stringify", e.message) from None
