"""The time family: wall-clock and monotonic time, ISO-8601 timestamps."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

from stdlib import args
from stdlib.registry import builtin


def _offset() -> float:
    """How far the clock of `--virtual-time` (lang.runtime.virtualtime) has jumped: the
    running loop's `clock_offset`; 0 on any other loop or none. (stdlib may not import
    lang.runtime: tests/test_layers.py.)"""
    return getattr(asyncio._get_running_loop(), "clock_offset", 0.0)


@builtin("time")
def now() -> float:
    """The current time in seconds since the Unix epoch (a float)."""
    return time.time() + _offset()


@builtin("time")
def monotonic() -> float:
    """Seconds from a clock that never goes back, for measuring intervals."""
    return time.monotonic() + _offset()


@builtin("time")
def iso_time(t: Any = None) -> str:
    """A Unix time (default: now) as UTC ISO-8601 with milliseconds, e.g. 2026-11-26T00:00:00.123Z."""
    seconds = now() if t is None else args.number("iso_time", 1, "t", t)
    if type(seconds) is float and not math.isfinite(seconds):
        raise args.error("iso_time", "time out of range")
    try:
        d = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise args.error("iso_time", "time out of range") from None
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d}.{d.microsecond // 1000:03d}Z")
