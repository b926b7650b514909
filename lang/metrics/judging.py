"""Thresholds judged at the end of a run, and the end-of-run summary (SPEC §12): text only;
the caller prints it (to standard error) and chooses the exit code."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lang.metrics.registry import Registry, Trend

_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


@dataclass
class Judged:
    text: str  # the condition as written: `ws_expect_duration.p95 < 200ms`
    ok: bool
    was: str  # the value it was judged on, with its unit: `0.342s`, `3`, `null`


def judge(registry: Registry, thresholds: Iterable[Any]) -> list[Judged]:
    """Each threshold (metric, tag, stat, op, value, text) against the metrics now. A stat
    with no value (a trend without samples, a counter never counted) breaches: a threshold
    on something that never happened has not been shown to hold."""
    out = []
    for t in thresholds:
        stat = t.stat or "count"
        value = registry.read(t.metric, stat, t.tag)
        ok = value is not None and _OPS[t.op](value, t.value)
        unit = registry.unit(t.metric) if stat not in ("count", "rate") else ""
        out.append(Judged(t.text, ok, _was(value, unit, stat)))
    return out


def _was(value: float | None, unit: str, stat: str) -> str:
    if value is None:
        return "null"
    if unit == "s":
        return f"{value:.3g}s"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f"{text}/s" if stat == "rate" else text


def breach_lines(judged: list[Judged]) -> list[str]:
    return [f"threshold breached: {j.text} (was {j.was})" for j in judged if not j.ok]


# ---------------------------------------------------------------- the summary


def duration(seconds: float | None) -> str:
    """A duration for people: 850us, 12.3ms, 1.24s, 2m05s."""
    if seconds is None:
        return "-"
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s == 0:
        return "0s"
    if s < 1e-3:
        return f"{sign}{s * 1e6:.0f}us"
    if s < 1:
        return f"{sign}{s * 1e3:.3g}ms"
    if s < 60:
        return f"{sign}{s:.3g}s"
    return f"{sign}{int(s // 60)}m{s % 60:04.1f}s"


def size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:g} B"


def _number(v: float) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def summary_lines(registry: Registry, judged: list[Judged]) -> list[str]:
    """One line per metric series that has data (built-in ones in SPEC §12's order, then
    the script's), then each threshold with ✓ or ✗."""
    elapsed = registry.elapsed()
    rows: list[tuple[str, str, str]] = []
    for name, kind, tag, v in registry.series():
        unit = registry.unit(name)
        if kind == "counter":
            rate = v / elapsed if elapsed > 0 else 0.0
            if unit == "B":
                shown = f"{size(v)}  {size(rate)}/s"
            else:
                shown = f"count={_number(v)}  rate={rate:.4g}/s"
        else:
            shown = _trend_text(v, unit, elapsed)
        rows.append((name, tag or "", shown))
    lines = [f"metrics ({duration(elapsed)} of run time)"]
    if not rows:
        lines.append("  (nothing measured)")
    width = max((len(n) for n, _, _ in rows), default=0)
    tag_width = max((len(t) for _, t, _ in rows), default=0)
    for name, tag, shown in rows:
        lines.append(f"  {name.ljust(width)}  {tag.ljust(tag_width)}  {shown}".rstrip())
    if judged:
        lines.append("thresholds")
        for j in judged:
            lines.append(f"  {'✓' if j.ok else '✗'} {j.text} (was {j.was})")
    return lines


def _trend_text(t: Trend, unit: str, elapsed: float) -> str:
    st = t.stats(elapsed)
    show = duration if unit == "s" else (lambda x: "-" if x is None else f"{x:.4g}")
    parts = [f"{k}={show(st[k])}" for k in ("avg", "min", "med", "p90", "p95", "p99", "max")]
    return f"count={t.count}  " + " ".join(parts)

