"""Argument checks for built-ins: each returns the value when it has the right type and
raises EvtRuntimeError naming the function, the argument and the type received otherwise."""

from __future__ import annotations

from typing import Any

from lang.errors import EvtRuntimeError
from lang.values import type_name


def fail(fn: str, index: int, name: str, wanted: str, got: Any) -> EvtRuntimeError:
    return EvtRuntimeError(
        f"{fn}: argument {index} ({name}) must be {wanted}, got {type_name(got)}")


def string(fn: str, index: int, name: str, v: Any) -> str:
    if type(v) is not str:
        raise fail(fn, index, name, "a string", v)
    return v


def integer(fn: str, index: int, name: str, v: Any) -> int:
    if type(v) is not int:
        if type(v) is float and v.is_integer():
            return int(v)
        raise fail(fn, index, name, "an int", v)
    return v


def number(fn: str, index: int, name: str, v: Any) -> int | float:
    t = type(v)
    if t is not int and t is not float:
        raise fail(fn, index, name, "a number", v)
    return v


def list_(fn: str, index: int, name: str, v: Any) -> list:
    if type(v) is not list:
        raise fail(fn, index, name, "a list", v)
    return v


def map_(fn: str, index: int, name: str, v: Any) -> dict:
    if type(v) is not dict:
        raise fail(fn, index, name, "a map", v)
    return v


def bytes_(fn: str, index: int, name: str, v: Any) -> bytes:
    if type(v) is not bytes:
        raise fail(fn, index, name, "bytes", v)
    return v


def one_of(fn: str, index: int, name: str, v: Any, types: tuple[type, ...], wanted: str) -> Any:
    if type(v) not in types:
        raise fail(fn, index, name, wanted, v)
    return v


def error(fn: str, message: str) -> EvtRuntimeError:
    """A runtime error raised by a built-in for a bad value (not a bad type)."""
    return EvtRuntimeError(f"{fn}: {message}")
