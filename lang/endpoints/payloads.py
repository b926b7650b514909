"""Messages as evt values and back: what `send` puts on the wire, what a handler's mode
(`json`, `text`, `binary`) makes of a received message, and a message's size for the
metrics."""

from __future__ import annotations

from typing import Any

from lang.values import json_error, parse_json, to_json


def payload_size(msg: str | bytes) -> int:
    """A message's payload bytes (data_sent, data_received): a text's UTF-8 length."""
    if type(msg) is bytes or msg.isascii():  # type: ignore[union-attr]
        return len(msg)
    return len(msg.encode("utf-8", "surrogatepass"))  # type: ignore[union-attr]


def encode(value: Any, mode: str | None) -> str | bytes:
    """What `send` puts on the wire: strings as text, bytes as binary, anything else as JSON
    text; `text` / `binary` force the frame type."""
    t = type(value)
    if mode is None:
        if t is str or t is bytes:
            return value
        return to_json(value)
    if mode == "text":
        if t is str:
            return value
        if t is bytes:
            return value.decode("utf-8", "replace")
        return to_json(value)
    if t is bytes:
        return value
    if t is str:
        return value.encode("utf-8")
    return to_json(value).encode("utf-8")


def convert(msg: str | bytes, mode: str | None) -> Any:
    """A received message as a handler's mode wants it. json mode raises ValueError."""
    if mode is None:
        return msg
    if mode == "text":
        return msg if type(msg) is str else msg.decode("utf-8", "replace")
    if mode == "binary":
        return msg if type(msg) is bytes else msg.encode("utf-8")
    try:
        return parse_json(msg)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"message is not JSON ({json_error(e)})") from None
