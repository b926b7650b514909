"""`--report-html FILE` (SPEC §12): one self-contained page (inline CSS and SVG charts, no
script and nothing fetched, so it opens offline and anywhere): the verdict of the thresholds,
the headline figures, a timeline of messages per second and open connections, a histogram of
every trend with its percentiles marked, and the whole summary as a table."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

from lang.metrics.judging import Judged, duration, size
from lang.metrics.registry import Registry, Trend

MAX_POINTS = 2048  # timeline samples kept; past it, every other one is dropped


@dataclass
class Timeline:
    """Samples of the run's totals, about one a second: (elapsed, sent, received, open,
    errors). Bounded: when full, every other sample goes (the rates between the samples
    kept stay right: they are differences over the time between them)."""

    points: list[tuple[float, int, int, int, int]] = field(default_factory=list)

    def sample(self, registry: Registry) -> None:
        t = registry.tallies.values()
        self.points.append((registry.elapsed(), sum(x.msgs_sent for x in t),
                            sum(x.msgs_received for x in t), sum(x.open for x in t),
                            sum(x.errors for x in t)))
        if len(self.points) > MAX_POINTS:
            kept = self.points[::2]  # the first and, below, the last stay
            self.points = kept if len(self.points) % 2 else [*kept, self.points[-1]]


# ---------------------------------------------------------------- charts (SVG)

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 720, 240, 52, 28, 14, 52


def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0.0]
    step = 10 ** math.floor(math.log10(top))
    for m in (1, 2, 5, 10):
        if top / (step * m) <= 5:
            step *= m
            break
    return [i * step for i in range(int(top / step) + 1)]


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"


def timeline_svg(tl: Timeline) -> str:
    pts = tl.points
    if len(pts) < 2:
        return '<p class="empty">The run was too short for a timeline (under a second).</p>'
    t0, t1 = pts[0][0], pts[-1][0]
    span = max(t1 - t0, 1e-9)
    rates = []  # (t, sent/s, received/s, open)
    for a, b in itertools.pairwise(pts):
        dt = max(b[0] - a[0], 1e-9)
        rates.append((b[0], (b[1] - a[1]) / dt, (b[2] - a[2]) / dt, b[3]))
    top = max(max(r[1], r[2]) for r in rates) or 1.0
    top_open = max(max(r[3] for r in rates), 1)
    ticks = _ticks(top * 1.05)
    top = ticks[-1] if ticks[-1] > 0 else 1.0
    open_ticks = _ticks(top_open * 1.05)
    top_open = open_ticks[-1] if open_ticks[-1] > 0 else 1

    def x(t: float) -> float:
        return PAD_L + (t - t0) / span * (W - PAD_L - PAD_R)

    def y(v: float, scale: float) -> float:
        return H - PAD_B - v / scale * (H - PAD_B - PAD_T)

    def path(i: int, scale: float) -> str:
        return " ".join(f"{'M' if k == 0 else 'L'}{x(r[0]):.1f},{y(r[i], scale):.1f}"
                        for k, r in enumerate(rates))

    grid = "".join(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v, top):.1f}" '
                   f'y2="{y(v, top):.1f}"/><text class="axis" x="{PAD_L - 6}" '
                   f'y="{y(v, top) + 4:.1f}" text-anchor="end">{_num(v)}</text>'
                   for v in ticks)
    right = "".join(f'<text class="axis open" x="{W - PAD_R + 6}" y="{y(v, top_open) + 4:.1f}"'
                    f'>{_num(v)}</text>' for v in open_ticks)
    xt = "".join(f'<text class="axis" x="{x(t0 + f * span):.1f}" y="{H - 8}" '
                 f'text-anchor="middle">{duration(t0 + f * span)}</text>'
                 for f in (0, 0.25, 0.5, 0.75, 1))
    area = f"{path(2, top)} L{x(rates[-1][0]):.1f},{y(0, top):.1f} L{x(rates[0][0]):.1f}," \
           f"{y(0, top):.1f} Z"
    return (f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="messages per second and '
            f'open connections over the run">{grid}{right}{xt}'
            f'<path class="area" d="{area}"/>'
            f'<path class="line recv" d="{path(2, top)}"/>'
            f'<path class="line sent" d="{path(1, top)}"/>'
            f'<path class="line open" d="{path(3, top_open)}"/></svg>'
            '<p class="legend"><span class="key sent"></span>sent/s '
            '<span class="key recv"></span>received/s '
            '<span class="key open"></span>open connections (right axis)</p>')


def histogram_svg(t: Trend, unit: str) -> str:
    """The trend's samples in up to 40 bars on a log scale (the sketch's bins, merged),
    with med, p95 and p99 marked."""
    buckets = [(v, c) for v, c in t.buckets() if v > 0]
    if not buckets:
        return '<p class="empty">Every sample was zero or less.</p>'
    lo, hi = math.log10(buckets[0][0]), math.log10(buckets[-1][0])
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    bars = 40
    counts = [0.0] * bars
    for v, c in buckets:
        i = min(int((math.log10(v) - lo) / (hi - lo) * bars), bars - 1)
        counts[i] += c
    top = max(counts)
    inner_w = W - PAD_L - PAD_R
    bw = inner_w / bars
    show = duration if unit == "s" else (lambda v: f"{v:.3g}")

    def x(v: float) -> float:
        return PAD_L + (math.log10(v) - lo) / (hi - lo) * inner_w

    rects = "".join(
        f'<rect class="bar" x="{PAD_L + i * bw + 1:.1f}" y="{H - PAD_B - c / top * (H - PAD_B - PAD_T):.1f}" '
        f'width="{max(bw - 2, 1):.1f}" height="{c / top * (H - PAD_B - PAD_T):.1f}">'
        f'<title>{int(c)} samples near {show(10 ** (lo + (i + 0.5) / bars * (hi - lo)))}</title>'
        f'</rect>' for i, c in enumerate(counts) if c)
    marks = ""
    for row, (name, q) in enumerate((("med", 0.5), ("p95", 0.95), ("p99", 0.99))):
        v = t.quantile(q)
        if v is not None and v > 0:
            xv = min(max(x(v), PAD_L), W - PAD_R)
            # one row of labels each, so that close percentiles do not overlap; a label
            # near the right edge goes to the left of its line
            anchor, dx = ("end", -3) if xv > W - PAD_R - 90 else ("start", 3)
            marks += (f'<line class="mark" x1="{xv:.1f}" x2="{xv:.1f}" y1="{PAD_T}" '
                      f'y2="{H - PAD_B}"/><text class="mark-label" x="{xv + dx:.1f}" '
                      f'y="{PAD_T + 10 + 13 * row}" text-anchor="{anchor}">{name} '
                      f'{show(v)}</text>')
    xt = "".join(f'<text class="axis" x="{PAD_L + f * inner_w:.1f}" y="{H - 8}" '
                 f'text-anchor="middle">{show(10 ** (lo + f * (hi - lo)))}</text>'
                 for f in (0, 0.25, 0.5, 0.75, 1))
    return (f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="histogram">'
            f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{H - PAD_B}" '
            f'y2="{H - PAD_B}"/>{rects}{marks}{xt}</svg>')


# ---------------------------------------------------------------- the page

CSS = """
:root { --bg:#0f172a; --card:#111c33; --ink:#e2e8f0; --dim:#94a3b8; --line:#1e293b;
  --sent:#38bdf8; --recv:#a78bfa; --open:#fbbf24; --ok:#22c55e; --bad:#ef4444; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; }
main { max-width:1100px; margin:0 auto; padding:32px 20px 64px; }
h1 { font-size:26px; margin:0 0 4px; } h2 { font-size:18px; margin:36px 0 12px; }
.sub { color:var(--dim); margin:0 0 20px; }
.verdict { display:inline-block; padding:6px 14px; border-radius:999px; font-weight:600; }
.verdict.ok { background:rgba(34,197,94,.15); color:var(--ok); }
.verdict.bad { background:rgba(239,68,68,.15); color:var(--bad); }
.verdict.none { background:var(--card); color:var(--dim); }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(160px,1fr)); gap:12px;
  margin:20px 0; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px;
  padding:14px 16px; }
.card .v { font-size:24px; font-weight:700; } .card .k { color:var(--dim); font-size:13px; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:12px;
  padding:16px; margin-bottom:16px; }
.panel h3 { margin:0 0 8px; font-size:15px; } .panel h3 small { color:var(--dim);
  font-weight:400; }
svg { width:100%; height:auto; display:block; }
.grid { stroke:var(--line); } .axis { fill:var(--dim); font-size:11px; }
.line { fill:none; stroke-width:2; } .line.sent { stroke:var(--sent); }
.line.recv { stroke:var(--recv); } .line.open { stroke:var(--open); stroke-dasharray:5 4; }
.axis.open { fill:var(--open); } .area { fill:rgba(167,139,250,.12); }
.bar { fill:var(--sent); opacity:.85; } .bar:hover { opacity:1; }
.mark { stroke:var(--open); stroke-width:1.5; stroke-dasharray:4 3; }
.mark-label { fill:var(--open); font-size:11px; }
.legend { color:var(--dim); font-size:13px; margin:6px 0 0; }
.key { display:inline-block; width:12px; height:3px; margin:0 6px 3px 12px;
  vertical-align:middle; }
.key.sent { background:var(--sent); } .key.recv { background:var(--recv); }
.key.open { background:var(--open); }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:right; padding:7px 10px; border-bottom:1px solid var(--line);
  white-space:nowrap; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align:left; }
th { color:var(--dim); font-weight:500; font-size:13px; }
.ok { color:var(--ok); } .bad { color:var(--bad); } .empty { color:var(--dim); }
.scroll { overflow-x:auto; }
"""


def render(registry: Registry, judged: list[Judged], timeline: Timeline, title: str) -> str:
    from html import escape  # here: every `evt run` imports this module, few write a report

    elapsed = registry.elapsed()
    breached = [j for j in judged if not j.ok]
    if not judged:
        verdict = '<span class="verdict none">no thresholds</span>'
    elif breached:
        verdict = (f'<span class="verdict bad">✗ {len(breached)} of {len(judged)} '
                   f'threshold{"s" if len(judged) != 1 else ""} breached</span>')
    else:
        verdict = (f'<span class="verdict ok">✓ {"all " if len(judged) > 1 else ""}'
                   f'{len(judged)} threshold{"s" if len(judged) != 1 else ""} held</span>')

    def total(name: str) -> float:
        return registry.counter_value(name) or 0

    cards = [("sessions", f"{total('ws_sessions'):g}"),
             ("messages sent", f"{total('ws_msgs_sent'):g}"),
             ("messages received", f"{total('ws_msgs_received'):g}"),
             ("errors", f"{total('ws_errors'):g}")]
    reply = registry.trend_value("ws_expect_duration")
    if reply is not None and reply.count:
        cards.append(("reply p95", duration(reply.quantile(0.95))))
    cards_html = "".join(f'<div class="card"><div class="v">{escape(v)}</div>'
                         f'<div class="k">{escape(k)}</div></div>' for k, v in cards)
    charts = []
    for name, kind, tag, v in registry.series():
        if kind == "trend":
            unit = registry.unit(name)
            label = f"{name}" + (f" <small>[{escape(tag)}]</small>" if tag else "")
            charts.append(f'<div class="panel"><h3>{label} <small>{v.count} samples</small>'
                          f'</h3>{histogram_svg(v, unit)}</div>')
    rows = []
    for name, kind, tag, v in registry.series():
        unit = registry.unit(name)
        if kind == "counter":
            rate = v / elapsed if elapsed > 0 else 0.0
            count = size(v) if unit == "B" else f"{v:g}"
            rate_s = f"{size(rate)}/s" if unit == "B" else f"{rate:.4g}/s"
            cells = [count, rate_s] + [""] * 7
        else:
            st = v.stats(elapsed)
            show = duration if unit == "s" else (lambda x: "" if x is None else f"{x:.4g}")
            cells = [str(v.count), f"{st['rate']:.4g}/s"] + [
                show(st[k]) for k in ("avg", "min", "med", "p90", "p95", "p99", "max")]
        rows.append("<tr><td>" + escape(name) + "</td><td>" + escape(tag or "") + "</td>"
                    + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("metric", "tag", "count", "rate", "avg", "min",
                                               "med", "p90", "p95", "p99", "max"))
    table = (f'<div class="panel scroll"><table><thead><tr>{head}</tr></thead><tbody>'
             f'{"".join(rows) or "<tr><td>nothing measured</td></tr>"}</tbody></table></div>')
    th_rows = "".join(f'<tr><td class="{"ok" if j.ok else "bad"}">{"✓" if j.ok else "✗"}</td>'
                      f'<td>{escape(j.text)}</td><td>{escape(j.was)}</td></tr>' for j in judged)
    thresholds = (f'<h2>Thresholds</h2><div class="panel"><table><thead><tr><th></th>'
                  f'<th>threshold</th><th>was</th></tr></thead><tbody>{th_rows}</tbody>'
                  f'</table></div>') if judged else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>evt report: {escape(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>evt report: {escape(title)}</h1>
<p class="sub">{when} · {duration(elapsed)} of run time</p>
{verdict}
<div class="cards">{cards_html}</div>
<h2>Timeline</h2><div class="panel">{timeline_svg(timeline)}</div>
<h2>Latency and other trends</h2>
{"".join(charts) or '<p class="empty">No trend had samples.</p>'}
{thresholds}
<h2>Every metric</h2>{table}
</main></body></html>
"""
