#!/usr/bin/env python3
"""`evt lsp` latency: how long after a change of a 1,000-line file the editor has its
diagnostics (SPEC §17; goal: within 200 ms).

    python bench/lsp.py [--quick]        (or: python bench/run.py --only lsp)

`evt lsp` runs as a subprocess, spoken to over stdio as an editor does (Content-Length
framed JSON-RPC). The file is bench/run.py's generated script at 1,000 lines. Each change is
one incremental edit of one line, cycling through three kinds: a valid edit, one that makes a
check error (an unknown name) and one that makes a syntax error (an unclosed parenthesis),
each followed by waiting for the publishDiagnostics of that version. The time is from
writing the change to reading its diagnostics. The reference, measured in the same run, is
the in-process parse + check of the same text (what `evt check` does once the process is
up): the protocol's and the server's overhead is the difference.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
GOAL_MS = 200.0
LINES = 1000


class _Server:
    """`evt lsp` and the few messages the benchmark needs."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lang", "lsp"], cwd=ROOT, env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.ids = 0

    def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **msg}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while (line := self.proc.stdout.readline().strip()) or not length:
            if not line and self.proc.poll() is not None:
                raise RuntimeError("evt lsp ended")
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params: dict[str, Any] | None) -> Any:
        self.ids += 1
        self.send({"id": self.ids, "method": method, "params": params})
        while True:
            msg = self.read()
            if msg.get("id") == self.ids and "method" not in msg:
                return msg.get("result")

    def diagnostics(self, uri: str, version: int) -> list[dict[str, Any]]:
        while True:
            msg = self.read()
            if msg.get("method") == "textDocument/publishDiagnostics" and \
                    msg["params"]["uri"] == uri and msg["params"].get("version") == version:
                return msg["params"]["diagnostics"]

    def close(self) -> None:
        self.request("shutdown", None)
        self.send({"method": "exit"})
        self.proc.wait(timeout=30)


def _script() -> str:
    sys.path.insert(0, str(BENCH))
    from run import gen_script

    return gen_script(LINES)  # whole units: a few lines over 1,000


def _edits(text: str) -> list[tuple[str, int, str, str]]:
    """(kind, line, old, new) edits of one line: valid, check error, syntax error."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "let x = a + b" in line and i > LINES // 2)
    line = lines[at]
    return [("valid", at, line, line.replace("(a / 2)", "(a / 3)")),
            ("check error", at, line, line.replace("(a / 2)", "(zz / 2)")),
            ("syntax error", at, line, line.replace("(a / 2)", "(a / 2"))]


def _reference_ms(text: str, repeats: int) -> float:
    sys.path.insert(0, str(ROOT))
    import stdlib
    from lang.lsp.program import Parsed, analyse

    registry = stdlib.load()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        analyse("/bench/lsp.evt", text + " " * (i + 1), registry, Parsed())
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_lsp(quick: bool) -> dict[str, Any]:
    text = _script()
    rounds = 10 if quick else 40
    server = _Server()
    uri = (ROOT / "bench" / "out" / "lsp_bench.evt").as_uri()
    try:
        server.request("initialize", {"processId": os.getpid(), "rootUri": ROOT.as_uri(),
                                      "capabilities": {}})
        server.send({"method": "initialized", "params": {}})
        t0 = time.perf_counter()
        server.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "evt", "version": 1, "text": text}}})
        server.diagnostics(uri, 1)
        open_ms = (time.perf_counter() - t0) * 1000
        version = 1
        by_kind: dict[str, list[float]] = {}
        current = {e[1]: e[2] for e in _edits(text)}
        for i in range(rounds * 3):
            kind, line, _old, new = _edits(text)[i % 3]
            version += 1
            change = {"range": {"start": {"line": line, "character": 0},
                                "end": {"line": line, "character": len(current[line])}},
                      "text": new}
            t0 = time.perf_counter()
            server.send({"method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [change]}})
            found = server.diagnostics(uri, version)
            by_kind.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            current[line] = new
            assert bool(found) == (kind != "valid"), (kind, found)
        t0 = time.perf_counter()
        server.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                   "position": {"line": 5, "character": 4}})
        completion_ms = (time.perf_counter() - t0) * 1000
        server.close()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    every = [t for ts in by_kind.values() for t in ts]
    return {
        "lines": text.count("\n"), "changes": len(every), "open_ms": round(open_ms, 1),
        "change_to_diagnostics_ms": {k: round(statistics.median(v), 1)
                                     for k, v in by_kind.items()},
        "median_ms": round(statistics.median(every), 1),
        "p95_ms": round(sorted(every)[int(len(every) * 0.95) - 1], 1),
        "max_ms": round(max(every), 1),
        "completion_ms": round(completion_ms, 1),
        "reference_parse_check_ms": round(_reference_ms(text, 5 if quick else 15), 1),
        "goal_ms": GOAL_MS,
    }


def report_lsp(r: dict[str, Any]) -> None:
    print(f"\n## lsp (diagnostics after a change of a {r['lines']}-line file, {r['changes']} "
          "changes)")
    kinds = ", ".join(f"{k} {v} ms" for k, v in r["change_to_diagnostics_ms"].items())
    print(f"change -> diagnostics: median {r['median_ms']} ms, p95 {r['p95_ms']} ms, max "
          f"{r['max_ms']} ms (goal < {r['goal_ms']:.0f} ms); by kind: {kinds}")
    print(f"reference: parse + check in-process {r['reference_parse_check_ms']} ms "
          f"(x{r['median_ms'] / max(r['reference_parse_check_ms'], 0.1):.2f}); didOpen -> "
          f"diagnostics {r['open_ms']} ms; a completion {r['completion_ms']} ms")


if __name__ == "__main__":
    (BENCH / "out").mkdir(exist_ok=True)
    result = bench_lsp("--quick" in sys.argv[1:])
    report_lsp(result)
