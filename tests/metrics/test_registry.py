"""lang/metrics/registry.py's trends: every quantile within 1% of the true sample at its rank
whatever the samples (hypothesis), count/avg/min/max exact, memory bounded by the bin limit,
and totals over tags that are the merge of the per-tag series."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lang.metrics.registry import BIN_LIMIT, QUANTILES, Registry, Trend

samples = st.lists(st.floats(min_value=1e-6, max_value=1e4, allow_nan=False), min_size=1,
                   max_size=400)


def bracket(xs: list[float], q: float) -> tuple[float, float]:
    """The samples on either side of rank q * (n - 1) (the sketch's definition of rank)."""
    s = sorted(xs)
    rank = q * (len(s) - 1)
    return s[math.floor(rank)], s[math.ceil(rank)]


@settings(max_examples=300, deadline=None)
@given(samples)
def test_quantiles_are_within_one_percent_and_the_rest_is_exact(xs: list[float]) -> None:
    t = Trend()
    for x in xs:
        t.add(x)
    for q in QUANTILES.values():
        low, high = bracket(xs, q)
        v = t.quantile(q)
        assert v is not None and low * 0.99 <= v <= high * 1.01, (q, v, low, high)
    st_ = t.stats(1.0)
    assert st_["count"] == len(xs)
    assert st_["min"] == min(xs) and st_["max"] == max(xs)
    assert math.isclose(st_["avg"], math.fsum(xs) / len(xs), rel_tol=1e-9)


def test_memory_is_bounded_whatever_the_number_of_samples() -> None:
    t = Trend()
    rng = random.Random(7)
    for _ in range(200_000):  # twelve decades, from 1 us to 10^6 s
        t.add(10 ** rng.uniform(-6, 6))
    assert len(t.buckets()) <= BIN_LIMIT
    assert t.count == 200_000


def test_the_total_over_tags_is_the_merge_of_the_tags() -> None:
    r = Registry()
    a, b = r.tally("a"), r.tally("b")
    xs, ys = [i / 1000 for i in range(1, 301)], [i / 100 for i in range(1, 101)]
    for x in xs:
        a.expect_duration.add(x)
    for y in ys:
        b.expect_duration.add(y)
    a.msgs_sent, b.msgs_sent = 3, 4
    assert r.read("ws_msgs_sent", "count") == 7
    assert r.read("ws_msgs_sent", "count", "b") == 4
    assert r.read("ws_expect_duration", "count") == 400
    assert r.read("ws_expect_duration", "max") == 1.0
    low, high = bracket(xs + ys, 0.95)
    p95 = r.read("ws_expect_duration", "p95")
    assert p95 is not None and low * 0.99 <= p95 <= high * 1.01
    assert r.read("ws_expect_duration", "p95", "nope") is None
    assert r.read("ws_msgs_sent", "p95") is None  # not a stat of a counter
