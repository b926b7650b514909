"""Rule callbacks for SPEC §12's metric forms (`count`, `measure`, `threshold`): a mixin of
transform.ToAst, as smaller.py is. Like ToAst, it only changes shape (the checker judges
metric names, stats and tags)."""

from __future__ import annotations

from typing import Any

from lang import ast as A


class MetricSyntax:
    """`count NAME [VALUE]`, `measure NAME VALUE`, `threshold METRIC[TAG].STAT OP VALUE`
    (uses ToAst's _sp and number)."""

    _sp: Any
    number: Any  # [a NUMBER token] -> A.Const (a syntax error for a bad number)

    def count_stmt(self, c: list) -> A.Count:
        return A.Count(c[1].value, c[2] if len(c) > 2 else None, span=self._sp(c[1]))

    def measure_stmt(self, c: list) -> A.Measure:
        return A.Measure(c[1].value, c[2], span=self._sp(c[1]))

    def threshold_decl(self, c: list) -> A.Threshold:
        # THRESHOLD NAME (LSQB NAME RSQB)? (DOT NAME)? comp_op MINUS? NUMBER
        metric = c[1]
        tag = stat = None
        tag_span = stat_span = A.NOSPAN
        i = 2
        if c[i].type == "LSQB":
            tag, tag_span = c[i + 1].value, self._sp(c[i + 1])
            i += 3
        if c[i].type == "DOT":
            stat, stat_span = c[i + 1].value, self._sp(c[i + 1])
            i += 2
        op = c[i]  # `in` and `not in` parse too: the checker refuses them
        negative = c[i + 1].type == "MINUS"
        number = c[-1]
        value = self.number([number]).value
        text = (f"{metric.value}{f'[{tag}]' if tag is not None else ''}"
                f"{f'.{stat}' if stat is not None else ''} {op.value} "
                f"{'-' if negative else ''}{number.value}")
        return A.Threshold(metric.value, tag, stat, op.value, -value if negative else value,
                           text, span=self._sp(metric), tag_span=tag_span,
                           stat_span=stat_span, op_span=self._sp(op))
