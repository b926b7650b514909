"""A run's metrics (SPEC §12): the built-in ones per declaration, and the script's own.

Rules of this module:
- It knows nothing of sockets or of the language: the endpoints bump the counters of their
  declaration's `Tally` in place (plain int attributes: a message costs two additions) and
  add samples to its trends; the statements `count`/`measure` and `metric()` go through
  `Registry`.
- Trends are DDSketch sketches (the `ddsketch` package, Datadog's published algorithm:
  a relative error of at most 1% on every quantile, memory bounded by `BIN_LIMIT` bins
  whatever the number of samples, and sketches merge exactly, so the total over all
  declarations is a merge). count, sum, min and max are kept exactly beside it.
- A built-in metric's series are keyed by the declaration's name (its tag), never a URL.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

from ddsketch import LogCollapsingLowestDenseDDSketch

from lang.metrics.names import BUILTIN, COUNTER_STATS, QUANTILES, TALLY, TREND_STATS

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 2048  # at 1%, samples from 1 us to 10^6 s span about 1,400 bins; past the limit
# the lowest bins collapse first, so only the tiniest samples could lose accuracy


class Trend:
    """Samples of one series: exact count, sum, min, max; quantiles from a DDSketch."""

    __slots__ = ("count", "max", "min", "sketch", "sum")

    def __init__(self) -> None:
        self.sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.sketch.add(value)
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merged(self, other: Trend) -> Trend:
        out = Trend()
        for t in (self, other):
            if t.count:
                out.sketch.merge(t.sketch)
                out.count += t.count
                out.sum += t.sum
                out.min = min(out.min, t.min)
                out.max = max(out.max, t.max)
        return out

    def quantile(self, q: float) -> float | None:
        if not self.count:
            return None
        v = self.sketch.get_quantile_value(q)
        # a bin's value may lie a little outside what was seen: min and max are exact
        return None if v is None else min(max(v, self.min), self.max)

    def stats(self, elapsed: float) -> dict[str, float | int | None]:
        n = self.count
        out: dict[str, float | int | None] = {
            "count": n, "rate": n / elapsed if elapsed > 0 else 0.0,
            "avg": self.sum / n if n else None,
            "min": self.min if n else None, "max": self.max if n else None}
        for stat, q in QUANTILES.items():
            out[stat] = self.quantile(q)
        return out

    def buckets(self) -> list[tuple[float, float]]:
        """The sketch's bins as (value, count), low to high: each bin's value stands for
        every sample within 1% of it (zero first, then the positive bins): for a histogram
        of durations (the script's negative samples are left out)."""
        sk = self.sketch
        out: list[tuple[float, float]] = [(0.0, sk._zero_count)] if sk._zero_count else []
        store, mapping = sk._store, sk._mapping
        for i, c in enumerate(store.bins):
            if c:
                out.append((mapping.value(store.offset + i), c))
        return out


class Tally:
    """The built-in metrics of one declaration (its name is their tag). The endpoints bump
    the counters in place and add to the trends."""

    __slots__ = ("connecting", "data_received", "data_sent", "errors", "expect_duration",
                 "msgs_received", "msgs_sent", "open", "ping", "session_duration",
                 "sessions")

    def __init__(self) -> None:
        self.sessions = self.msgs_sent = self.msgs_received = 0
        self.data_sent = self.data_received = self.errors = 0
        self.open = 0  # connections open now (a gauge: for the timeline and the progress line)
        self.connecting = Trend()
        self.session_duration = Trend()
        self.ping = Trend()
        self.expect_duration = Trend()

    def trend(self, name: str) -> Trend:
        return getattr(self, name[3:])  # "ws_ping" -> self.ping

    def counter(self, name: str) -> int:
        return getattr(self, TALLY[name])


def _clock_offset() -> float:
    """How far the clock of `--virtual-time` (lang.runtime.virtualtime) has jumped: the
    running loop's `clock_offset`; 0 on any other loop or none (the metrics layer may not
    import lang.runtime: tests/test_layers.py)."""
    return getattr(asyncio._get_running_loop(), "clock_offset", 0.0)


def monotonic() -> float:
    """`time.monotonic()`, on the virtual clock under --virtual-time."""
    return time.monotonic() + _clock_offset()


def wall() -> float:
    """`time.time()`, on the virtual clock under --virtual-time."""
    return time.time() + _clock_offset()


class Registry:
    """Every metric of a run. `elapsed` (the run's seconds so far) divides the rates."""

    def __init__(self, clock: Any = monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.tallies: dict[str, Tally] = {}  # declaration name -> its built-in metrics
        self.counters: dict[str, float] = {}  # the script's `count`
        self.trends: dict[str, Trend] = {}  # the script's `measure`

    def elapsed(self) -> float:
        return self.clock() - self.started

    def tally(self, tag: str) -> Tally:
        t = self.tallies.get(tag)
        if t is None:
            t = self.tallies[tag] = Tally()
        return t

    def count(self, name: str, value: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def measure(self, name: str, value: float) -> None:
        t = self.trends.get(name)
        if t is None:
            t = self.trends[name] = Trend()
        t.add(value)

    # ------------------------------------------------------------ reading

    def kind(self, name: str) -> str | None:
        """"counter", "trend", or None for a metric that does not exist (yet)."""
        if name in BUILTIN:
            return BUILTIN[name][0]
        if name in self.counters:
            return "counter"
        if name in self.trends:
            return "trend"
        return None

    def unit(self, name: str) -> str:
        return BUILTIN[name][1] if name in BUILTIN else ""

    def counter_value(self, name: str, tag: str | None = None) -> float | None:
        if name in TALLY:
            if tag is None:
                return sum(t.counter(name) for t in self.tallies.values())
            t = self.tallies.get(tag)
            return None if t is None else t.counter(name)
        if tag is not None:
            return None  # the script's own metrics have no tags
        return self.counters.get(name)

    def trend_value(self, name: str, tag: str | None = None) -> Trend | None:
        if name in BUILTIN:
            if tag is None:
                out = Trend()
                for t in self.tallies.values():
                    part = t.trend(name)
                    if part.count:
                        out = out.merged(part)
                return out
            t = self.tallies.get(tag)
            return None if t is None else t.trend(name)
        if tag is not None:
            return None
        return self.trends.get(name)

    def read(self, name: str, stat: str, tag: str | None = None) -> float | int | None:
        """`metric(NAME, STAT [, TAG])`: null for an unknown metric, tag or stat, and for a
        stat of a trend without samples (its count is 0)."""
        kind = self.kind(name)
        if kind == "counter":
            if stat not in COUNTER_STATS:
                return None
            v = self.counter_value(name, tag)
            if v is None:
                return None
            if stat == "rate":
                e = self.elapsed()
                return v / e if e > 0 else 0.0
            return v
        if kind == "trend":
            tr = self.trend_value(name, tag)
            if tr is None or stat not in TREND_STATS:
                return None
            return tr.stats(self.elapsed())[stat]
        return None

    def series(self) -> Iterator[tuple[str, str, str | None, Any]]:
        """Every series that has data, in the table's order then the script's: (name, kind,
        tag, value): a counter's number, or a trend's Trend."""
        for name, (kind, _, _) in BUILTIN.items():
            for tag, t in self.tallies.items():
                if kind == "counter":
                    v = t.counter(name)
                    if v:
                        yield name, kind, tag, v
                else:
                    tr = t.trend(name)
                    if tr.count:
                        yield name, kind, tag, tr
        for name, v in self.counters.items():
            yield name, "counter", None, v
        for name, tr in self.trends.items():
            if tr.count:
                yield name, "trend", None, tr

    def open_now(self) -> int:
        return sum(t.open for t in self.tallies.values())

    def snapshot(self) -> dict[str, Any]:
        """Every metric now, as JSON-ready data (`--metrics-out`'s lines)."""
        elapsed = self.elapsed()
        metrics: dict[str, Any] = {}
        for name, kind, tag, v in self.series():
            entry = metrics.setdefault(name, {"type": kind, "unit": self.unit(name),
                                              "values": {}})
            key = tag if tag is not None else ""
            if kind == "counter":
                entry["values"][key] = {"count": v, "rate": v / elapsed if elapsed > 0 else 0.0}
            else:
                entry["values"][key] = v.stats(elapsed)
        return {"time": round(wall(), 3), "elapsed": round(elapsed, 3),
                "open": self.open_now(), "metrics": metrics}
