#!/usr/bin/env python3
"""The load test: python bench/load_test.py [--conns 1000] [--msgs 100]

1,000 concurrent clients x 100 round trips each against the evt echo server
(examples/echo_server.evt, defaults), driven by bench/wsload.py, five rounds. Checks that
every message came back (none lost, every echo correct), that the server's open file
descriptors return to their baseline after each round, and that its memory does not grow
from round to round (Python keeps freed memory for reuse, so RSS settles on a plateau rather
than falling back). Prints one line for RELIABILITY.md. (A documented command, not part of the test suite: it takes a minute and
most of the machine.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, target: int, timeout: float = 30) -> int:
    """Poll the fd count until it is back at target (or the timeout)."""
    deadline = time.monotonic() + timeout
    n = fds(pid)
    while n > target and time.monotonic() < deadline:
        time.sleep(0.2)
        n = fds(pid)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--msgs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * a.conns + 256)), hard))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-m", "lang", "run", "--set",
                               f"listen=127.0.0.1:{port}", str(ROOT / "examples/echo_server.evt")],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "listening on" in server.stderr.readline()
        load = [sys.executable, str(ROOT / "bench/wsload.py"), "--url",
                f"ws://127.0.0.1:{port}/", "--connect-concurrency", "100", "--server-pid",
                str(server.pid)]
        # warm up: the event loop opens a few things once, at its first connection
        subprocess.run([*load, "--conns", "10", "--msgs", "10"], capture_output=True,
                       timeout=60)
        base_rss, base_fds = rss_kib(server.pid), fds(server.pid)
        rounds = []
        for _ in range(a.rounds):
            res = subprocess.run([*load, "--conns", str(a.conns), "--msgs", str(a.msgs)],
                                 capture_output=True, text=True, timeout=600)
            out = json.loads(res.stdout.strip().splitlines()[-1])
            loaded_rss = rss_kib(server.pid)
            after_fds = settle(server.pid, base_fds)
            rounds.append({"echoed": out["messages"], "errors": out["errors"],
                           "msgs_per_s": out["msgs_per_s"], "p99_ms": out["p99_ms"],
                           "rss_kib_loaded": loaded_rss, "rss_kib_after": rss_kib(server.pid),
                           "fds_after": after_fds})
        expected = a.conns * a.msgs
        lost = sum(expected - r["echoed"] + r["errors"] for r in rounds)
        fds_back = all(r["fds_after"] <= base_fds for r in rounds)
        # Python keeps freed memory for reuse and the allocator warms up over the first rounds
        # (tracemalloc shows the Python heap flat after round 3): the test is a plateau, the
        # last round growing RSS by less than 3% over the one before
        before_last, last = rounds[-2]["rss_kib_after"], rounds[-1]["rss_kib_after"]
        no_growth = last <= before_last * 1.03
        ok = lost == 0 and fds_back and no_growth and server.poll() is None
        print(json.dumps({"conns": a.conns, "msgs_per_conn": a.msgs, "rounds": rounds,
                          "baseline": {"rss_kib": base_rss, "fds": base_fds}}, indent=1))
        total = expected * a.rounds
        print(f"RELIABILITY: load {a.conns} clients x {a.msgs} messages, {a.rounds} rounds: "
              f"{total} tried, {total - lost} passed; fds {base_fds} -> "
              f"{[r['fds_after'] for r in rounds]}; RSS after each round (KiB) "
              f"{[r['rss_kib_after'] for r in rounds]} from {base_rss} "
              f"({'OK' if ok else 'FAILED'})")
        sys.exit(0 if ok else 1)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
