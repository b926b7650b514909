#!/usr/bin/env python3
"""The evt benchmarks, in one command: python bench/run.py [--quick] [--only SECTION...]

Every figure is reported against a reference measured in the same run, interleaved and
repeated (medians), because these machines are shared and noisy: an absolute time alone
means little.

Sections:
  language  parse speed (lines/s of a generated 10,000-line script), `evt check` start-up
            against `python -c pass`, a CPU-bound evt loop against the same loop in CPython
  client    an evt client doing request/response round trips against an echo server,
            against a plain anyio+wsproto client written for the benchmark
  server    the evt echo server against a plain anyio+wsproto echo server and the
            `websockets` library's, under the same load from bench/wsload.py (a raw-socket
            load generator): 1 conn x 20,000 round trips of 32 B, 50 conns x 1,000,
            10 conns pipelined 64 KiB; msgs/s, p50/p99 latency, server CPU per message;
            and idle memory per connection with 2,000 connections
  load      evt as a load generator (examples/load.evt: C connections x N JSON round trips
            with `expect`) against the same load from a `websockets`-library client, as
            round trips per CPU-second of the generator, at C = 50 and C = 1,000; and idle
            memory per client connection (bench/load.py)
  lsp       `evt lsp` over stdio: a change of a 1,000-line file to its diagnostics
            (goal < 200 ms), against parse + check in-process (bench/lsp.py)
  cluster   a chat broadcast load on one process without a cluster against
            `--workers 2` with a Redis bus: deliveries/s and the added p99 latency of a
            cross-process broadcast (goal < 5 ms) (bench/cluster.py; needs redis-server)
Results go to stdout (a table per section) and bench/out/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def header() -> dict[str, Any]:
    cpus = os.cpu_count()
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import anyio
    import wsproto

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {cpus} cores, {model}",
        "python": platform.python_version(),
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else "",
        "wsproto": getattr(wsproto, "__version__", ""),
    }


# ---------------------------------------------------------------- language


def gen_script(lines: int) -> str:
    """A realistic mix: handlers, sends, prints, conditions, loops, maps and functions."""
    out: list[str] = ['connection api { url = "ws://127.0.0.1:9/"; ping_interval = 5s }']
    i = 0
    while len(out) < lines:
        i += 1
        out += [
            f"func f{i}(a, b) {{",
            f"    let x = a + b * {i} - (a / 2)",
            "    if x > 10 and not (b == null) {",
            f'        print "x is ${{x}}", [1, 2, 3], {{k: x, "n": {i}}}',
            "    } else {",
            "        x = x % 7",
            "    }",
            "    for v in range(3) { x = x + v }",
            "    return x",
            "}",
            f"on websocket receive api json as m{i} {{",
            f"    if m{i}.id == {i} {{ send api {{op: \"ack\", id: m{i}.id}} }}",
            f"    emit got{i} m{i}",
            "}",
        ]
    return "\n".join(out) + "\n"  # whole units: a little over `lines`


def bench_language(quick: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from lang.syntax.parser import parse_module

    text = gen_script(10_000)
    nlines = text.count("\n")
    parse_module(text, "warm.evt")
    parse_times = []
    for _ in range(3 if quick else 9):
        t0 = time.perf_counter()
        parse_module(text, "bench.evt")
        parse_times.append(time.perf_counter() - t0)
    lines_per_s = nlines / median(parse_times)

    # start-up: `evt check` (cold process) against `python -c pass`, interleaved
    target = str(ROOT / "examples" / "hello.evt")
    check_ms, pass_ms = [], []
    subprocess.run([PY, "-m", "lang", "check", target], env=ENV, check=True)  # warm caches
    for _ in range(5 if quick else 15):
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "lang", "check", target], env=ENV, check=True)
        check_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], check=True)
        pass_ms.append((time.perf_counter() - t0) * 1000)

    # a CPU-bound loop, in-process, against the same loop in CPython
    import anyio

    import stdlib
    from lang.check.checker import check
    from lang.interpreter.program import Runtime
    from lang.syntax.parser import parse_module as parse

    n = 1_000_000
    loop_src = f"on project start {{ let s = 0; for i in range({n}) {{ s = s + i }}; print s }}"
    decls = list(parse(loop_src, "loop.evt").decls)
    builtins = stdlib.load()
    assert not check(decls, builtins)

    def py_loop() -> int:
        s = 0
        for i in range(n):
            s = s + i
        return s

    class Sink:
        def write(self, s: str) -> None:
            pass

        def flush(self) -> None:
            pass

    evt_s, py_s = [], []
    for _ in range(3 if quick else 5):
        rt = Runtime(builtins=builtins, out=Sink(), err=Sink())  # type: ignore[arg-type]
        inits = rt.install(decls)
        t0 = time.perf_counter()
        anyio.run(rt.main, inits, False, backend="asyncio")
        evt_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        py_loop()
        py_s.append(time.perf_counter() - t0)
    return {
        "parse_lines_per_s": round(lines_per_s),
        "parse_s_10k_lines": round(median(parse_times), 4),
        "check_startup_ms": round(median(check_ms), 1),
        "python_startup_ms": round(median(pass_ms), 1),
        "check_vs_python_startup": round(median(check_ms) / median(pass_ms), 2),
        "loop_evt_s": round(median(evt_s), 4),
        "loop_cpython_s": round(median(py_s), 4),
        "loop_ratio_evt_over_cpython": round(median(evt_s) / median(py_s), 1),
    }


# ---------------------------------------------------------------- processes


class Server:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=ENV, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                # (a connect from the port itself is TCP's self-connect, not the server)
                if s.connect_ex(("127.0.0.1", self.port)) == 0 and \
                        s.getsockname()[1] != self.port:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def servers(loops: list[str]) -> list[Server]:
    out = []
    for loop in loops:
        sfx = "" if loop == "uvloop" else " (asyncio)"
        out.append(Server(f"evt{sfx}", [PY, "-m", "lang", "run", "--loop", loop, "--set",
                                        "listen=127.0.0.1:{port}",
                                        str(ROOT / "examples" / "echo_server.evt")]))
        # the cost of measuring (SPEC §12: at most 5% more CPU per message than without)
        out.append(Server(f"evt --no-metrics{sfx}", [
            PY, "-m", "lang", "run", "--loop", loop, "--no-metrics", "--set",
            "listen=127.0.0.1:{port}", str(ROOT / "examples" / "echo_server.evt")]))
        out.append(Server(f"anyio+wsproto{sfx}", [PY, str(BENCH / "plain_server.py"), "{port}",
                                                  "--loop", loop]))
        out.append(Server(f"websockets{sfx}", [PY, str(BENCH / "websockets_server.py"),
                                               "{port}", "--loop", loop]))
    return out


def wsload(port: int, pid: int, args: list[str], procs: int = 1) -> dict[str, Any]:
    cmd = [PY, str(BENCH / "wsload.py"), "--url", f"ws://127.0.0.1:{port}/",
           "--server-pid", str(pid), "--procs", str(procs), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"wsload failed: {res.stderr[-500:]}")
    return json.loads(lines[-1])


WORKLOADS = {
    "1 conn x 32 B round trips": ["--conns", "1", "--msgs", "20000", "--warmup", "1000"],
    "50 conns x 32 B": ["--conns", "50", "--msgs", "1000", "--warmup", "50"],
    # 1,000 messages a connection: the CPU figures come from 10 ms ticks, and 200 gave
    # figures quantized to 5 us a message
    "10 conns x 64 KiB pipelined": ["--conns", "10", "--msgs", "1000", "--size", "65536",
                                    "--window", "4", "--warmup", "10", "--binary"],
}
QUICK = {
    "1 conn x 32 B round trips": ["--conns", "1", "--msgs", "3000", "--warmup", "200"],
    "50 conns x 32 B": ["--conns", "50", "--msgs", "200", "--warmup", "20"],
    "10 conns x 64 KiB pipelined": ["--conns", "10", "--msgs", "40", "--size", "65536",
                                    "--window", "4", "--warmup", "4", "--binary"],
}


def bench_server(quick: bool, loops: list[str], repeats: int) -> dict[str, Any]:
    work = QUICK if quick else WORKLOADS
    srv = servers(loops)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {w: [] for w in work}
                                                           for s in srv}
    for s in srv:
        s.start()
    try:
        for _ in range(repeats):
            for w, args in work.items():
                for s in srv:  # interleaved: every server under the same conditions
                    assert s.proc is not None
                    results[s.name][w].append(wsload(s.port, s.proc.pid, args))
        # is the load generator the bottleneck? two load processes against one server
        check: dict[str, Any] = {}
        s = srv[0]
        assert s.proc is not None
        one = wsload(s.port, s.proc.pid, work["50 conns x 32 B"], procs=1)
        two = wsload(s.port, s.proc.pid, work["50 conns x 32 B"], procs=2)
        check = {"server": s.name, "one_proc_msgs_per_s": round(one["msgs_per_s"]),
                 "two_procs_msgs_per_s": round(two["msgs_per_s"]),
                 "one_proc_client_cpu_pct": one.get("client_cpu_pct")}
        idle = {} if quick else bench_idle(srv, 2000)
    finally:
        for s in srv:
            s.stop()
    for name, per in results.items():
        # a server that used no CPU did not get the load (once, 2026-12-07, the websockets
        # server's runs showed none and its idle connections no memory): no figures from it
        if all(r.get("server_cpu_pct") == 0 for runs in per.values() for r in runs):
            raise RuntimeError(f"{name}: no server CPU measured: the load did not reach "
                               "the process started; run again")
    table: dict[str, Any] = {}
    for name, per in results.items():
        table[name] = {}
        for w, runs in per.items():
            table[name][w] = {
                "msgs_per_s": round(median([r["msgs_per_s"] for r in runs])),
                "p50_ms": round(median([r["p50_ms"] for r in runs]), 3),
                "p99_ms": round(median([r["p99_ms"] for r in runs]), 3),
                "server_cpu_us_per_msg": _cpu_per_msg(runs),
                "errors": sum(r.get("errors", 0) for r in runs),
            }
    return {"table": table, "load_check": check, "idle": idle}


def _cpu_per_msg(runs: list[dict[str, Any]]) -> float | None:
    vals = []
    for r in runs:
        pct, total, n = r.get("server_cpu_pct"), r.get("total_s"), r.get("messages")
        if pct is not None and total and n:
            vals.append(pct / 100 * total / n * 1e6)
    return round(median(vals), 1) if vals else None


def bench_idle(srv: list[Server], conns: int) -> dict[str, Any]:
    """Server RSS growth per idle connection, with `conns` connections held open."""
    out = {}
    for s in srv:
        assert s.proc is not None
        s.stop()
        s.start()
        assert s.proc is not None
        base = s.rss_kib()
        cmd = [PY, str(BENCH / "wsload.py"), "--url", f"ws://127.0.0.1:{s.port}/", "--hold",
               "--conns", str(conns), "--msgs", "1"]
        holder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdin is not None
        ready = holder.stdout.readline()
        if '"ready"' not in ready:
            holder.kill()
            out[s.name] = None
            continue
        time.sleep(1.0)  # let the server settle (idle memory, not a wait for an event)
        grown = s.rss_kib() - base
        holder.stdin.write("close\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
        out[s.name] = round(grown / conns, 1)
    return out


# ---------------------------------------------------------------- client


def bench_client(quick: bool, repeats: int) -> dict[str, Any]:
    n = "3000" if quick else "20000"
    ref = Server("websockets", [PY, str(BENCH / "websockets_server.py"), "{port}",
                                "--loop", "uvloop"])
    ref.start()
    evt_r, plain_r, ws_r = [], [], []
    try:
        url = f"ws://127.0.0.1:{ref.port}/"
        for _ in range(repeats):
            res = subprocess.run([PY, "-m", "lang", "run", "--set", f"url={url}", "--set",
                                  f"n={n}", str(BENCH / "client_rtt.evt")], env=ENV,
                                 capture_output=True, text=True, timeout=300)
            evt_r.append(json.loads(res.stdout.strip().splitlines()[-1])["rtt_per_s"])
            res = subprocess.run([PY, str(BENCH / "plain_client.py"), url, n, "32", "--loop",
                                  "uvloop"], env=ENV, capture_output=True, text=True,
                                 timeout=300)
            plain_r.append(json.loads(res.stdout.strip().splitlines()[-1])["rtt_per_s"])
            res = subprocess.run([PY, str(BENCH / "websockets_client.py"), url, n, "32"],
                                 env=ENV, capture_output=True, text=True, timeout=300)
            ws_r.append(json.loads(res.stdout.strip().splitlines()[-1])["rtt_per_s"])
    finally:
        ref.stop()
    return {"evt_rtt_per_s": round(median(evt_r)), "plain_rtt_per_s": round(median(plain_r)),
            "ratio_evt_over_plain": round(median(evt_r) / median(plain_r), 2),
            "websockets_rtt_per_s": round(median(ws_r)),
            "ratio_evt_over_websockets": round(median(evt_r) / median(ws_r), 2),
            "server": "websockets (uvloop)", "loop": "uvloop (both clients)"}


# ---------------------------------------------------------------- report


def report(res: dict[str, Any]) -> None:
    h = res["header"]
    print(f"# evt benchmarks: {h['date']}; {h['machine']}; Python {h['python']}")
    if "language" in res:
        lang = res["language"]
        print("\n## language")
        print(f"parse: {lang['parse_lines_per_s']:,} lines/s (10,000 lines in "
              f"{lang['parse_s_10k_lines']} s; goal >= 50,000)")
        print(f"evt check start-up: {lang['check_startup_ms']} ms vs python -c pass "
              f"{lang['python_startup_ms']} ms (x{lang['check_vs_python_startup']}; goal < 150 ms)")
        print(f"loop sum(range(1e6)): evt {lang['loop_evt_s']} s vs CPython "
              f"{lang['loop_cpython_s']} s = {lang['loop_ratio_evt_over_cpython']}x "
              f"(goal <= 30x)")
    if "client" in res:
        c = res["client"]
        print("\n## client (round trips of 32 B against the websockets echo server)")
        print(f"evt {c['evt_rtt_per_s']:,}/s vs plain anyio+wsproto {c['plain_rtt_per_s']:,}/s"
              f" = {c['ratio_evt_over_plain']} (goal >= 0.9)")
        print(f"evt {c['evt_rtt_per_s']:,}/s vs the websockets client (asyncio) "
              f"{c['websockets_rtt_per_s']:,}/s = {c['ratio_evt_over_websockets']} "
              f"(goal >= 1.1)")
    if "server" in res:
        t = res["server"]["table"]
        names = list(t)
        ref = next((n for n in names if n == "websockets (asyncio)"), None) or \
            next(n for n in names if n.startswith("websockets"))
        print(f"\n## server (echo; ratios of msgs/s against {ref})")
        works = list(next(iter(t.values())))
        print("| server | " + " | ".join(works) + " |")
        print("|---|" + "---:|" * len(works))
        for n in names:
            cells = []
            for w in works:
                v = t[n][w]
                ratio = v["msgs_per_s"] / t[ref][w]["msgs_per_s"]
                cells.append(f"{ratio:.2f} ({v['msgs_per_s']:,}/s, p50 {v['p50_ms']} ms, "
                             f"p99 {v['p99_ms']} ms, cpu {v['server_cpu_us_per_msg']} us)")
            print(f"| {n} | " + " | ".join(cells) + " |")
        print(f"\nserver CPU per message against {ref} (lower is better)")
        print("| server | " + " | ".join(works) + " |")
        print("|---|" + "---:|" * len(works))
        for n in names:
            cells = []
            for w in works:
                mine, theirs = t[n][w]["server_cpu_us_per_msg"], t[ref][w]["server_cpu_us_per_msg"]
                cells.append(f"{mine / theirs:.2f}x" if mine and theirs else "-")
            print(f"| {n} | " + " | ".join(cells) + " |")
        for n in names:
            off = f"evt --no-metrics{n[3:]}" if n.startswith("evt") and "no-metrics" not in n \
                else None
            if off in t:
                cells = []
                for w in works:
                    on_cpu, off_cpu = t[n][w]["server_cpu_us_per_msg"], \
                        t[off][w]["server_cpu_us_per_msg"]
                    cells.append(f"{w}: {on_cpu / off_cpu:.3f}x" if on_cpu and off_cpu else "-")
                print(f"\nthe cost of metrics, {n} against {off} (CPU per message; goal "
                      f"<= 1.05x): " + ", ".join(cells))
        lc = res["server"]["load_check"]
        if lc:
            print(f"\nload generator check on {lc['server']}: 1 process "
                  f"{lc['one_proc_msgs_per_s']:,}/s (its CPU {lc['one_proc_client_cpu_pct']}%),"
                  f" 2 processes {lc['two_procs_msgs_per_s']:,}/s")
        idle = res["server"]["idle"]
        if idle:
            print("\nidle memory per connection (2,000 connections): " + ", ".join(
                f"{n} {v} KiB" for n, v in idle.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small loads, fewer repeats")
    ap.add_argument("--only", nargs="+",
                    choices=("language", "client", "server", "load", "lsp", "cluster"))
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--loops", nargs="+", default=["asyncio", "uvloop"],
                    choices=("asyncio", "uvloop"))
    a = ap.parse_args()
    sections = a.only or ["language", "client", "server", "load", "lsp", "cluster"]
    repeats = a.repeats or (1 if a.quick else 3)
    res: dict[str, Any] = {"header": header()}
    if "language" in sections:
        res["language"] = bench_language(a.quick)
    if "client" in sections:
        res["client"] = bench_client(a.quick, repeats)
    if "server" in sections:
        res["server"] = bench_server(a.quick, a.loops, repeats)
    if "load" in sections:
        from load import bench_load

        ref = Server("websockets", [PY, str(BENCH / "websockets_server.py"), "{port}",
                                    "--loop", "uvloop"])
        ref.start()
        try:
            res["load"] = bench_load(a.quick, repeats, ENV, ref)
        finally:
            ref.stop()
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    if "lsp" in sections:
        from lsp import bench_lsp

        res["lsp"] = bench_lsp(a.quick)
    if "cluster" in sections:
        from cluster import bench_cluster

        res["cluster"] = bench_cluster(a.quick)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    report(res)
    if "load" in res:
        from load import report_load

        report_load(res["load"])
    if "lsp" in res:
        from lsp import report_lsp

        report_lsp(res["lsp"])
    if "cluster" in res:
        from cluster import report_cluster

        report_cluster(res["cluster"])


if __name__ == "__main__":
    main()
