"""SPEC §12 against real peers: evt runs in its own process (`evt run` with the metrics
options) and talks to `websockets` servers and clients in this one. The counts are exact and
checked one by one; trends are checked against what the peer itself saw; waits are bounded
and nothing is timed but the reply latency, which is compared with the peer's own clock."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from helpers import ROOT, run_cli, write
from helpers.process import T, evt_process
from helpers.server import client, recv
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.anyio

GOLDEN = ROOT / "tests" / "golden" / "metrics"


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


async def echo(ws: ServerConnection) -> None:
    async for msg in ws:
        await ws.send(msg)


# ---------------------------------------------------------------- the built-in counts


async def test_each_builtin_metric_counts_what_happened(tmp_path: Path) -> None:
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        source = f"""
            connection api {{ url = "ws://127.0.0.1:{port}/"; ping_interval = 100ms }}
            connection bad {{ url = "ws://127.0.0.1:1/"; reconnect = false }}
            on project start {{ start api; start bad }}
            on websocket start api {{
                for m in ["hello", "héllo wörld", b"\\x00\\x01\\x02"] {{
                    send api m
                    expect api as r within 30s
                }}
                let tries = 0  # a pong is not an event: look now and then (at most 60 s)
                while metric("ws_ping", "count", "api") < 2 and tries < 1200 {{
                    wait 50ms
                    tries = tries + 1
                }}
                stop api
            }}
            on websocket error bad as e {{ }}
            on websocket stop api {{
                let names = ["ws_sessions", "ws_msgs_sent", "ws_msgs_received", "data_sent",
                             "data_received", "ws_errors"]
                let out = {{}}
                for n in names {{
                    out[n] = [metric(n, "count", "api"), metric(n, "count", "bad"),
                              metric(n, "count")]
                }}
                for n in ["ws_connecting", "ws_session_duration", "ws_ping",
                          "ws_expect_duration"] {{
                    out[n] = [metric(n, "count", "api"), metric(n, "min", "api")]
                }}
                out["unknown"] = [metric("nope", "count"), metric("ws_msgs_sent", "count", "x"),
                                  metric("ws_msgs_sent", "p95")]
                print json_stringify(out)
                exit 0
            }}
        """
        async with evt_process(tmp_path, source) as child:
            assert await child.exited(2 * T) == 0, child.err.text
    got = last_json(child.out.text)
    sizes = 5 + len("héllo wörld".encode()) + 3
    assert got["ws_sessions"] == [1, 0, 1]
    assert got["ws_msgs_sent"] == [3, 0, 3]
    assert got["ws_msgs_received"] == [3, 0, 3]
    assert got["data_sent"] == [sizes, 0, sizes]  # UTF-8 bytes, not characters
    assert got["data_received"] == [sizes, 0, sizes]
    assert got["ws_errors"] == [0, 1, 1]  # the refused connection's error event
    assert got["ws_connecting"][0] == 1 and got["ws_connecting"][1] > 0
    # the stop event comes once the session is over: its duration is in
    assert got["ws_session_duration"][0] == 1
    assert got["ws_ping"][0] >= 2 and got["ws_ping"][1] > 0
    assert got["ws_expect_duration"][0] == 3
    assert got["unknown"] == [None, None, None]


async def test_count_measure_and_every_stat(tmp_path: Path) -> None:
    """The script's own metrics: counts exact, avg/min/max exact, quantiles within 1% of the
    sample at their rank; every stat of metric() on a trend and a counter."""
    source = """
        let count = 0          # the words stay usable as names
        func measure(x) { return x }
        on project start {
            for i in range(1, 101) {
                measure lat i / 1000
                count hits
            }
            count bytes 2.5
            count = measure(7)
            let out = {}
            for s in ["count", "rate", "avg", "min", "med", "max", "p90", "p95", "p99"] {
                out[s] = metric("lat", s)
            }
            out["hits"] = [metric("hits", "count"), metric("hits", "rate") > 0,
                           metric("hits", "p95")]
            out["bytes"] = metric("bytes", "count")
            out["names"] = count
            print json_stringify(out)
        }
    """
    res = run_cli(["run", str(write(tmp_path, source))])
    assert res.code == 0, res.err
    got = json.loads(res.out)
    samples = [i / 1000 for i in range(1, 101)]
    assert got["count"] == 100 and got["rate"] > 0
    assert got["avg"] == pytest.approx(statistics.fmean(samples), rel=1e-9)
    assert got["min"] == 0.001 and got["max"] == 0.1
    for stat, q in (("med", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        rank = q * (len(samples) - 1)
        low, high = samples[int(rank)], samples[min(int(rank) + 1, 99)]
        assert low * 0.99 <= got[stat] <= high * 1.01, (stat, got[stat], low, high)
    assert got["hits"] == [100, True, None]
    assert got["bytes"] == 2.5
    assert got["names"] == 7


# ---------------------------------------------------------------- reply latency


async def test_reply_latency_is_the_peers_delay(tmp_path: Path) -> None:
    """A peer that answers after 50 ms: the p50 of ws_expect_duration is within 5 ms of the
    delay the peer really took (its own clock: a busy machine oversleeps)."""
    delay = 0.050
    took: list[float] = []

    async def slow_echo(ws: ServerConnection) -> None:
        async for msg in ws:
            began = time.monotonic()
            await asyncio.sleep(delay)
            took.append(time.monotonic() - began)
            await ws.send(msg)

    async with serve(slow_echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        source = f"""
            connection api {{ url = "ws://127.0.0.1:{port}/" }}
            on project start {{ start api }}
            on websocket start api {{
                for i in range(40) {{
                    send api "q${{i}}"
                    expect api as r where r == "q${{i}}" within 30s
                }}
                print json_stringify([metric("ws_expect_duration", "med", "api"),
                                      metric("ws_expect_duration", "count", "api")])
                exit 0
            }}
        """
        async with evt_process(tmp_path, source) as child:
            assert await child.exited(2 * T) == 0, child.err.text
    p50, n = last_json(child.out.text)
    assert n == 40
    peer = statistics.median(took)
    assert peer * 0.99 <= p50 <= peer + 0.005, (p50, peer)


# ---------------------------------------------------------------- thresholds and summary


THRESHOLDS = """
    connection api {{ url = "ws://127.0.0.1:{port}/" }}
    threshold ws_msgs_received[api] == 20
    threshold ws_errors == 0
    threshold ws_expect_duration.p95 < 60s
    threshold ws_expect_duration[api].max {op} 0ms
    on project start {{ start api }}
    on websocket start api {{
        for i in range(20) {{
            send api "m${{i}}"
            expect api as r within 30s
            measure lengths len(r)
            count replies
        }}
        exit
    }}
"""


async def test_thresholds_hold_and_breach(tmp_path: Path) -> None:
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        held = write(tmp_path, THRESHOLDS.format(port=port, op=">"), "held.evt")
        breached = write(tmp_path, THRESHOLDS.format(port=port, op="<"), "breached.evt")

        def run(*args: str) -> tuple[int, str]:
            res = run_cli(["run", *args])
            return res.code, res.err

        code, err = await anyio.to_thread.run_sync(run, str(held))
        assert (code, err) == (0, "")
        code, err = await anyio.to_thread.run_sync(run, str(breached))
        assert code == 1
        assert re.fullmatch(r"threshold breached: ws_expect_duration\[api\]\.max < 0ms "
                            r"\(was [0-9.e-]+s\)\n", err), err
        # from the command line: one that holds, one that is breached
        code, err = await anyio.to_thread.run_sync(
            run, "--threshold", "replies >= 20", "--threshold", "lengths.min > 2", str(held))
        assert code == 1
        assert err == "threshold breached: lengths.min > 2 (was 2)\n"
        code, err = await anyio.to_thread.run_sync(
            run, "--threshold", "ws_msgs_sent[api].rate > 0", str(held))
        assert (code, err) == (0, "")
        # --summary: a golden file with the figures that depend on the machine masked
        code, err = await anyio.to_thread.run_sync(run, "--summary", str(held))
        assert code == 0
        assert mask(err) == (GOLDEN / "summary.txt").read_text(encoding="utf-8")


def mask(text: str) -> str:
    """The summary with what depends on the machine's speed replaced: rates, durations."""
    text = re.sub(r"^metrics \(.*? of run time\)$", "metrics (T of run time)", text, flags=re.M)
    text = re.sub(r"\b(rate|avg|min|med|p90|p95|p99|max)=\S+", r"\1=X", text)
    text = re.sub(r"\b(\d[\d.]* (?:B|KiB|MiB))  \S+ \S+/s", r"\1  X/s", text)
    return re.sub(r"\(was [0-9.e-]+(m?s|us)\)", "(was X)", text)


async def test_threshold_problems_are_diagnostics(tmp_path: Path) -> None:
    bad = write(tmp_path, """
        connection api { url = "ws://127.0.0.1:1/" }
        threshold ws_expect_duration[apj].p95 < 200ms
        threshold ws_errors.p95 == 0
        threshold ws_ping < 1s
        threshold hits > 1
        on project start { count hit; measure hit 1 }
    """)
    res = run_cli(["check", str(bad)])
    assert res.code == 3
    assert "unknown tag 'apj': a tag is the name of a connection or server; did you mean " \
           "'api'?" in res.err
    assert "'p95' is not a stat of the counter 'ws_errors' (one of count, rate)" in res.err
    assert "'ws_ping' is a trend: say which stat" in res.err
    assert "unknown metric 'hits' (a built-in one, or one the script counts or measures); " \
           "did you mean 'hit'?" in res.err
    assert "'hit' is a counter (`count` at line 7); a metric is a counter or a trend" in res.err
    ok = write(tmp_path, 'on project start { print "x" }', "ok.evt")
    res = run_cli(["run", "--threshold", "ws_ping.p99 <", str(ok)])
    assert res.code == 2 and res.err.startswith("--threshold:1:"), res.err
    assert "Traceback" not in res.err


# ---------------------------------------------------------------- outputs


SERVER = """
    server srv { listen = "127.0.0.1:0" }
    on project start { start srv }
    on websocket receive srv as m from p { send p m }
"""


async def test_metrics_out_writes_a_snapshot_each_second_and_a_final_one(tmp_path: Path
                                                                         ) -> None:
    out = tmp_path / "metrics.jsonl"
    async with evt_process(tmp_path, SERVER, "--metrics-out", str(out)) as child:
        url = await child.url()
        async with client(url) as ws:
            for i in range(5):
                await ws.send(f"m{i}")
                assert await recv(ws) == f"m{i}"
        with anyio.fail_after(T):  # a snapshot each second: wait for two of them
            while out.read_text(encoding="utf-8").count("\n") < 2:
                await anyio.sleep(0.1)
        code, _ = await child.terminate()
    assert code == 143
    child.assert_clean_stderr()
    lines = out.read_text(encoding="utf-8").splitlines()
    snaps = [json.loads(line) for line in lines]  # every line is JSON, also after SIGTERM
    assert len(snaps) >= 3
    assert [s.get("final", False) for s in snaps] == [False] * (len(snaps) - 1) + [True]
    last = snaps[-1]["metrics"]
    assert last["ws_msgs_received"]["values"]["srv"]["count"] == 5
    assert last["ws_sessions"]["values"]["srv"]["count"] == 1
    assert last["ws_session_duration"]["values"]["srv"]["count"] == 1
    assert snaps[-1]["elapsed"] >= snaps[0]["elapsed"]


async def test_metrics_listen_is_scraped_in_the_prometheus_format(tmp_path: Path) -> None:
    async with evt_process(tmp_path, SERVER, "--metrics-listen", "127.0.0.1:0") as child:
        url = await child.url()
        found = await child.err.wait_for(r"^metrics on (http://127\.0\.0\.1:\d+/metrics)$")
        scrape_url = found[0][1]
        async with client(url) as ws:
            for i in range(3):
                await ws.send(f"m{i}")
                assert await recv(ws) == f"m{i}"

            def scrape(u: str) -> tuple[int, str, str]:
                try:
                    with urllib.request.urlopen(u, timeout=T) as r:
                        return r.status, r.headers["Content-Type"], r.read().decode()
                except urllib.error.HTTPError as e:
                    return e.code, "", ""

            status, ctype, body = await anyio.to_thread.run_sync(scrape, scrape_url)
            missing, _, _ = await anyio.to_thread.run_sync(
                scrape, scrape_url.replace("/metrics", "/nothing"))
        code, _ = await child.terminate()
    assert code == 143
    child.assert_clean_stderr()
    assert status == 200 and ctype.startswith("text/plain; version=")
    assert missing == 404
    samples = {(s.name, s.labels.get("tag"), s.labels.get("quantile")): s.value
               for fam in text_string_to_metric_families(body) for s in fam.samples}
    assert samples[("evt_ws_msgs_received_total", "srv", None)] == 3
    assert samples[("evt_ws_msgs_sent_total", "srv", None)] == 3
    assert samples[("evt_data_received_bytes_total", "srv", None)] == 6
    assert samples[("evt_ws_sessions_total", "srv", None)] == 1
    assert samples[("evt_ws_open", "srv", None)] == 1
    assert samples[("evt_ws_session_duration_seconds_count", "srv", None)] == 0


def test_outputs_that_cannot_be_made_are_usage_errors_before_anything_runs(tmp_path: Path
                                                                           ) -> None:
    script = write(tmp_path, 'on project start { print "ran" }')
    missing = tmp_path / "no" / "such" / "dir"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = f"127.0.0.1:{taken.getsockname()[1]}"
    for option, value, words in (
            ("--metrics-listen", busy, "Address already in use"),
            ("--metrics-out", str(missing / "m.jsonl"), "No such file or directory"),
            ("--report-html", str(missing / "r.html"), "No such file or directory"),
            ("--metrics-listen", "127.0.0.1", "expected HOST:PORT"),
            ("--metrics-listen", "127.0.0.1:99999", "expected HOST:PORT")):
        res = run_cli(["run", option, value, str(script)])
        assert res.code == 2, (option, res)
        assert words in res.err and "Traceback" not in res.err, res.err
        assert "ran" not in res.out
    taken.close()
