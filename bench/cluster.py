#!/usr/bin/env python3
"""`python bench/run.py --only cluster` (or this file alone): the same chat broadcast load on
one evt process without a cluster and on `evt run --workers 2` with a Redis cluster bus, in
one run (SPEC §16, issue 19).

The load: C clients connect (SO_REUSEPORT spreads them over the workers; each greeting says
which worker took it); S of them send, each M messages one after the other, each message
only once every client received the one before (closed loop: S broadcasts in flight). Every client notes
when each message reaches it. Figures: deliveries per second (each message times C), and
the latency of a delivery (from the send to the receipt, one clock: the load generator's),
p50 and p99, split for the 2-worker run into deliveries within the sender's worker and
across workers. Then a latency probe: PROBE_CLIENTS clients, one sender, one broadcast in
flight. The added p99 is the probe's cross-worker p99 minus its 1-process p99 (goal: under
5 ms on this machine); under the full load the figures are the queues of a 2-core machine
running the load generator, both workers and Redis. Redis is a redis-server of the bench's own on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable

SCRIPT = """\
let listen = "127.0.0.1:0"
let redis = ""
server chat { listen = listen }
on project start { start chat }
on websocket start chat from p { send p "w ${worker()}" }
on websocket receive chat as m from p { broadcast chat m }
"""
CLUSTER = 'cluster { url = redis; prefix = "bench" }\n'
# the latency probe: few clients, so that the load generator (one Python process) is not
# what is measured: 200 receipts of one broadcast alone take it several milliseconds
PROBE_CLIENTS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _load(port: int, clients: int, senders: int, messages: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    conns = []
    workers = []
    for _ in range(clients):
        ws = await connect(f"ws://127.0.0.1:{port}/", ping_interval=None, max_queue=None,
                           open_timeout=60)
        greeting = await ws.recv()
        workers.append(int(str(greeting).split()[1]))
        conns.append(ws)
    total = senders * messages
    got: list[dict[str, float]] = [{} for _ in conns]
    done = asyncio.Event()
    remaining = [clients * total]
    own: dict[str, asyncio.Event] = {}

    reached: dict[str, int] = {}

    async def reader(i: int, ws: Any) -> None:
        async for msg in ws:
            got[i][msg] = time.perf_counter()
            reached[msg] = n = reached.get(msg, 0) + 1
            if n == clients:  # every client has it: its sender goes on
                own[msg].set()
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    sent: dict[str, float] = {}
    origin: dict[str, int] = {}

    async def sender(i: int) -> None:
        ws = conns[i]
        for n in range(messages):
            key = f"{i}:{n}"
            ev = own[key] = asyncio.Event()
            origin[key] = i
            sent[key] = time.perf_counter()
            await ws.send(key)
            await asyncio.wait_for(ev.wait(), 60)

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns)]
    began = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - began
    for t in readers:
        t.cancel()
    for ws in conns:
        await ws.close()
    same: list[float] = []
    cross: list[float] = []
    for i, received in enumerate(got):
        for key, at in received.items():
            ms = (at - sent[key]) * 1000
            (same if workers[i] == workers[origin[key]] else cross).append(ms)
    return {"deliveries_per_s": clients * total / elapsed, "seconds": elapsed,
            "workers_seen": sorted(set(workers)), "same_ms": same, "cross_ms": cross}


def _run_evt(script: Path, port: int, workers: int | None, redis: str | None) -> Any:
    cmd = [PY, "-m", "lang", "run", "-q"]
    if workers:
        cmd += ["--workers", str(workers)]
    cmd += ["--set", f"listen=127.0.0.1:{port}"]
    if redis:
        cmd += ["--set", f"redis={redis}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*cmd, str(script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # listening when a connection is accepted
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.5)  # every worker's listener up
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("evt exited: " + (proc.stderr.read() if proc.stderr else "")) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("evt did not start listening")


def _stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench_cluster(quick: bool) -> dict[str, Any]:
    server = shutil.which("redis-server")
    if server is None:
        return {"skipped": "redis-server is not installed"}
    clients, senders, messages = (50, 5, 40) if quick else (200, 10, 100)
    probe = 100 if quick else 500  # messages of the latency probe
    work = Path(tempfile.mkdtemp(prefix="evt-bench-cluster-"))
    rport = free_port()
    redis = subprocess.Popen([server, "--port", str(rport), "--save", "", "--appendonly", "no",
                              "--dir", str(work)], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    url = f"redis://127.0.0.1:{rport}/0"
    plain = work / "chat.evt"
    plain.write_text(SCRIPT)
    clustered = work / "chat_cluster.evt"
    clustered.write_text(CLUSTER + SCRIPT)
    runs: dict[str, list[dict[str, Any]]] = {"1 process, no cluster": [],
                                             "2 workers + Redis": []}
    probes: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    try:
        for _ in range(1 if quick else 3):  # interleaved repeats
            for name, (script, workers, redis_url) in (
                    ("1 process, no cluster", (plain, None, None)),
                    ("2 workers + Redis", (clustered, 2, url))):
                port = free_port()
                proc = _run_evt(script, port, workers, redis_url)
                try:
                    runs[name].append(asyncio.run(_load(port, clients, senders, messages)))
                    # latency with one broadcast in flight to a few clients: the bus's
                    # cost, not the queues of a saturated 2-core machine (the load, the
                    # workers and Redis)
                    probes[name].append(asyncio.run(_load(port, PROBE_CLIENTS, 1, probe)))
                finally:
                    _stop(proc)
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"clients": clients, "senders": senders, "messages": messages,
                           "probe": probe}
    for name, rs in runs.items():
        out[name] = _summary(rs)
        out[name]["probe"] = _summary(probes[name])
    return out


def _summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    same = [x for r in rs for x in r["same_ms"]]
    cross = [x for r in rs for x in r["cross_ms"]]
    return {"deliveries_per_s": statistics.median(r["deliveries_per_s"] for r in rs),
            "workers_seen": rs[-1]["workers_seen"],
            "same_p50_ms": percentile(same, 0.5), "same_p99_ms": percentile(same, 0.99),
            "cross_p50_ms": percentile(cross, 0.5), "cross_p99_ms": percentile(cross, 0.99),
            "deliveries": len(same) + len(cross)}


def report_cluster(res: dict[str, Any]) -> None:
    print("\n## cluster (chat broadcast: 1 process without a cluster against 2 workers "
          "with Redis)")
    if "skipped" in res:
        print(f"skipped: {res['skipped']}")
        return
    one, two = res["1 process, no cluster"], res["2 workers + Redis"]
    for title, key in ((f"load: {res['clients']} clients, {res['senders']} senders x "
                        f"{res['messages']} messages (each waits until every client has its "
                        f"last one)", None),
                       (f"latency probe: {PROBE_CLIENTS} clients, 1 sender x {res['probe']} "
                        f"messages", "probe")):
        print(title)
        for name, r in (("1 process, no cluster", one), ("2 workers + Redis", two)):
            r = r[key] if key else r
            cross = (f", across workers p50 {r['cross_p50_ms']:.2f} ms p99 "
                     f"{r['cross_p99_ms']:.2f} ms" if r["cross_p99_ms"] is not None else "")
            print(f"  {name}: {r['deliveries_per_s']:,.0f} deliveries/s, within a process "
                  f"p50 {r['same_p50_ms']:.2f} ms p99 {r['same_p99_ms']:.2f} ms{cross} "
                  f"(workers seen {r['workers_seen']})")
    ratio = two["deliveries_per_s"] / one["deliveries_per_s"]
    print(f"throughput under the load, 2 workers + Redis / 1 process: {ratio:.2f}x")
    p1, p2 = one["probe"], two["probe"]
    if p2["cross_p99_ms"] is not None:
        added = p2["cross_p99_ms"] - p1["same_p99_ms"]
        print(f"added p99 of a cross-process broadcast (probe): {added:.2f} ms (goal < 5 ms)")


if __name__ == "__main__":
    result = bench_cluster("--quick" in sys.argv)
    print(json.dumps({k: v for k, v in result.items()}, default=str)[:2000])
    report_cluster(result)
