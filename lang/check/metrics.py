"""Static checks of SPEC §12's `count`, `measure` and `threshold`: a mixin of the Checker
(it uses its symbols, error and _expr). A threshold is judged once every body has been
seen, since the script's own metrics are made by the `count`/`measure` that name them."""

from __future__ import annotations

import difflib
from typing import Any

from lang import ast as A
from lang.check.literals import NOT_LITERAL, literal_value
from lang.metrics.names import BUILTIN, COUNTER_STATS, TREND_STATS
from lang.values import type_name

_OPS = ("==", "!=", "<", "<=", ">", ">=")


def _hint(name: str, names: Any) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class MetricChecks:
    """A metric is a counter or a trend, never both; a threshold names a metric that exists,
    a stat of its kind and a declaration as its tag."""

    symbols: Any
    error: Any
    repl: bool
    _expr: Any

    def _metric_use(self, name: str, kind: str, span: A.Span) -> None:
        if name in BUILTIN:
            self.error(span, f"'{name}' is a built-in metric; the script's own need other "
                             "names")
            return
        metrics = self.symbols.metrics
        seen = metrics.get(name)
        if seen is None:
            metrics[name] = (kind, span)
        elif seen[0] != kind and not self.repl:
            verb = "count" if seen[0] == "counter" else "measure"
            self.error(span, f"'{name}' is a {seen[0]} (`{verb}` at line {seen[1].line}); a "
                             f"metric is a counter or a trend, not both")

    def _s_Count(self, s: A.Count, body: Any) -> None:
        self._metric_use(s.name, "counter", s.span)
        if s.value is not None:
            self._number_expr(s.value, body, "count")

    def _s_Measure(self, s: A.Measure, body: Any) -> None:
        self._metric_use(s.name, "trend", s.span)
        self._number_expr(s.value, body, "measure")

    def _number_expr(self, e: A.Expr, body: Any, what: str) -> None:
        self._expr(e, body)
        value = literal_value(e)
        if value is not NOT_LITERAL and (type(value) not in (int, float)):
            self.error(e.span, f"{what} takes a number, not {type_name(value)}")

    def _threshold(self, d: A.Threshold) -> None:
        s = self.symbols
        if d.metric in BUILTIN:
            kind = BUILTIN[d.metric][0]
        elif d.metric in s.metrics:
            kind = s.metrics[d.metric][0]
        else:
            self.error(d.span, f"unknown metric '{d.metric}' (a built-in one, or one the "
                               "script counts or measures)"
                               + _hint(d.metric, [*BUILTIN, *s.metrics]))
            return
        if d.tag is not None:
            if d.metric not in BUILTIN:
                self.error(d.tag_span, f"'{d.metric}' has no tags: only the built-in metrics "
                                       "are kept per connection or server")
            elif d.tag not in s.connections and d.tag not in s.servers:
                self.error(d.tag_span, f"unknown tag '{d.tag}': a tag is the name of a "
                                       "connection or server"
                                       + _hint(d.tag, [*s.connections, *s.servers]))
        stats = COUNTER_STATS if kind == "counter" else TREND_STATS
        if d.stat is None:
            if kind == "trend":
                self.error(d.span, f"'{d.metric}' is a trend: say which stat, e.g. "
                                   f"'{d.metric}.p95' (one of {', '.join(TREND_STATS)})")
        elif d.stat not in stats:
            self.error(d.stat_span, f"'{d.stat}' is not a stat of the {kind} '{d.metric}' "
                                    f"(one of {', '.join(stats)})" + _hint(d.stat, stats))
        if d.op not in _OPS:
            self.error(d.op_span, "a threshold compares with ==, !=, <, <=, > or >=")

