"""`--metrics-listen HOST:PORT` (SPEC §12): the metrics in the Prometheus text format on
`/metrics`, from an HTTP listener on anyio (a task per scrape, no thread). The format is
prometheus-client's own (`generate_latest` over a collector that reads the registry at each
scrape); names are prefixed `evt_`, durations end in `_seconds`, bytes in `_bytes`, counters
in `_total`; trends are summaries with the quantiles 0.5, 0.9, 0.95 and 0.99."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from lang.metrics.names import BUILTIN, QUANTILES
from lang.metrics.registry import Registry, Trend

HEAD_LIMIT = 8192  # bytes of request head; a longer one is refused
READ_TIMEOUT = 10.0  # seconds for a scraper to send its request


def _base(name: str, unit: str) -> str:
    return "evt_" + name + {"s": "_seconds", "B": "_bytes"}.get(unit, "")


class _Collector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        reg = self.registry
        for name, (kind, unit, what) in BUILTIN.items():
            base = _base(name, unit)
            if kind == "counter":
                fam: Metric = CounterMetricFamily(base, what, labels=["tag"])
                for tag, t in reg.tallies.items():
                    fam.add_metric([tag], t.counter(name))
            else:
                fam = Metric(base, what, "summary")
                for tag, t in reg.tallies.items():
                    _summary(fam, base, {"tag": tag}, t.trend(name))
            yield fam
        gauge = GaugeMetricFamily("evt_ws_open", "connections open now", labels=["tag"])
        for tag, t in reg.tallies.items():
            gauge.add_metric([tag], t.open)
        yield gauge
        for name, v in reg.counters.items():
            fam = CounterMetricFamily("evt_" + name, f"`count {name}`")
            fam.add_metric([], v)
            yield fam
        for name, tr in reg.trends.items():
            fam = Metric("evt_" + name, f"`measure {name}`", "summary")
            _summary(fam, "evt_" + name, {}, tr)
            yield fam


def _summary(fam: Metric, base: str, labels: dict[str, str], t: Trend) -> None:
    for q in QUANTILES.values():
        v = t.quantile(q)
        fam.add_sample(base, {**labels, "quantile": str(q)}, float("nan") if v is None else v)
    fam.add_sample(base + "_count", labels, t.count)
    fam.add_sample(base + "_sum", labels, t.sum)


def exposition(registry: Registry) -> bytes:
    """The registry now, in the Prometheus text format."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(registry))  # type: ignore[arg-type]
    return generate_latest(reg)


async def serve(listener: anyio.abc.Listener[Any], registry: Registry) -> None:
    """Answer scrapes until cancelled: GET or HEAD /metrics; anything else gets 404, 405 or
    400, and a client that says nothing for READ_TIMEOUT is dropped."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        try:
            async with stream:
                status, body, ctype, head_only = await _answer(stream, registry)
                reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                          405: "Method Not Allowed", 431: "Request Header Fields Too Large"
                          }[status]
                head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                await stream.send(head if head_only else head + body)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                OSError, TimeoutError):
            pass

    await listener.serve(handle)


async def _answer(stream: anyio.abc.ByteStream, registry: Registry
                  ) -> tuple[int, bytes, str, bool]:
    text = "text/plain; charset=utf-8"
    data = b""
    with anyio.fail_after(READ_TIMEOUT):
        while b"\r\n\r\n" not in data:
            if len(data) > HEAD_LIMIT:
                return 431, b"request head too large\n", text, False
            data += await stream.receive(4096)
    parts = data.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, b"bad request\n", text, False
    method, target = parts[0], parts[1]
    if target.split("?", 1)[0] != "/metrics":
        return 404, b"the metrics are on /metrics\n", text, method == "HEAD"
    if method not in ("GET", "HEAD"):
        return 405, b"GET /metrics\n", text, False
    return 200, exposition(registry), CONTENT_TYPE_LATEST, method == "HEAD"
