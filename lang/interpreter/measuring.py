"""What a run does with its metrics besides keeping them (SPEC §12): the outputs that run
beside the program (`--metrics-out`, `--metrics-listen`, the timeline of `--report-html`, the
progress line) and, at its end, the final snapshot, the thresholds, `--summary` and the
report. Built by the CLI; run by Runtime.main."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from lang.metrics import report
from lang.metrics.judging import breach_lines, duration, judge, summary_lines
from lang.metrics.registry import Registry

SNAPSHOT_EVERY = 1.0  # seconds between --metrics-out lines, timeline samples, progress


@dataclass
class MeasuringOptions:
    summary: bool = False
    out_path: str | None = None
    listen: tuple[str, int] | None = None
    report_html: str | None = None
    title: str = ""  # the script's name, for the report
    progress: Any = None  # a Stdio to draw the live progress line on (a terminal), or None


@dataclass
class Measuring:
    """The outputs of one run's registry. `start` (before the program runs) opens the file
    and the listener; `finish` (after its shutdown) writes the last snapshot and judges."""

    registry: Registry
    options: MeasuringOptions
    thresholds: list[Any] = field(default_factory=list)
    say: Any = print  # a line to standard error
    _out: Any = None
    timeline: report.Timeline = field(default_factory=report.Timeline)

    async def start(self, tg: anyio.abc.TaskGroup) -> str | None:
        """Open what the options name; None, or why it could not be done (a usage error)."""
        o = self.options
        if o.out_path is not None:
            try:
                self._out = open(o.out_path, "w", encoding="utf-8")
            except OSError as e:
                return f"--metrics-out {o.out_path}: {e.strerror or e}"
        if o.report_html is not None:  # found out now, not after a long run
            try:
                open(o.report_html, "w", encoding="utf-8").close()
            except OSError as e:
                return f"--report-html {o.report_html}: {e.strerror or e}"
        if o.listen is not None:
            host, port = o.listen
            try:
                listener = await anyio.create_tcp_listener(local_host=host, local_port=port,
                                                           reuse_port=False)
            except OSError as e:
                return f"--metrics-listen {host}:{port}: {e.strerror or e}"
            bound = listener.extra(anyio.abc.SocketAttribute.local_address)
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            self.say(f"metrics on http://{shown}:{bound[1]}/metrics")
            # imported when asked for: prometheus_client is a sixth of a run's imports
            from lang.metrics import prometheus

            tg.start_soon(prometheus.serve, listener, self.registry)
        if o.out_path is not None or o.report_html is not None or o.progress is not None:
            tg.start_soon(self._each_second)
        return None

    async def _each_second(self) -> None:
        o = self.options
        self.timeline.sample(self.registry)
        while True:
            await anyio.sleep(SNAPSHOT_EVERY)
            self._write_snapshot()
            self.timeline.sample(self.registry)
            if o.progress is not None:
                o.progress.show_status(self._progress_text())

    def _progress_text(self) -> str:
        pts = self.timeline.points
        (t0, s0, r0, _, _), (t1, s1, r1, open_, errors) = pts[-2], pts[-1]
        dt = max(t1 - t0, 1e-9)
        return (f"evt {duration(t1)}  open {open_}  sent {(s1 - s0) / dt:,.0f}/s  "
                f"received {(r1 - r0) / dt:,.0f}/s  errors {errors}")

    def _write_snapshot(self, final: bool = False) -> None:
        if self._out is None:
            return
        snap = self.registry.snapshot()
        if final:
            snap["final"] = True
        try:
            self._out.write(json.dumps(snap, allow_nan=False) + "\n")
            self._out.flush()
        except (OSError, ValueError) as e:
            self.say(f"evt: --metrics-out: {e}; no more snapshots are written")
            self._close()

    def _close(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except OSError:
                pass

    def finish(self) -> bool:
        """The run is over: the final snapshot, the summary, the thresholds. True when a
        threshold was breached."""
        o = self.options
        if o.progress is not None:
            o.progress.show_status(None)
        self._write_snapshot(final=True)
        self._close()
        judged = judge(self.registry, self.thresholds)
        if o.report_html is not None:
            self.timeline.sample(self.registry)
            page = report.render(self.registry, judged, self.timeline, o.title)
            try:
                with open(o.report_html, "w", encoding="utf-8") as f:
                    f.write(page)
            except OSError as e:
                self.say(f"evt: --report-html {o.report_html}: {e.strerror or e}")
        if self.options.summary:
            for line in summary_lines(self.registry, judged):
                self.say(line)
        for line in breach_lines(judged):
            self.say(line)
        return any(not j.ok for j in judged)
