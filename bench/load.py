"""The `load` section of bench/run.py: evt as a load generator (the examples/load.evt
shape: C connections of one declaration, each doing N sequential JSON round trips with
`expect`) against the same load made by a plain Python client on the `websockets` library
(bench/websockets_load.py), interleaved in one run, against the `websockets` echo server.
The figure is round trips per CPU-second of the generator (user + system, start-up
included for both); and the memory of an idle connection of each client. Each shape is
also run with one round trip per connection, which tells apart what start-up and opening
and closing the connections cost from the round trips after each connection's first.

Both generators run with their bytecode cached (in bench/out/pycache, filled by a warm-up
run of each), as installed code runs: pip compiles a package's .pyc files when it installs
it, so the `websockets` library in site-packages never compiles a module at start-up, while
evt run from a checkout with PYTHONDONTWRITEBYTECODE set (as on the CI machines) compiled
its ~100 modules at every start: 0.1 s of CPU, 2.5 us a round trip at 40,000 of them."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable

SHAPES = {50: 800, 1000: 40}  # C connections: N round trips each (40,000 round trips)
QUICK_SHAPES = {50: 100, 1000: 5}
IDLE_CONNS = 2000


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_generator(cmd: list[str], env: dict[str, str], expected: int) -> float:
    """Run one generator to its end; the round trips per CPU-second it made."""
    before = _children_cpu()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    cpu = _children_cpu() - before
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed: {res.stderr[-800:]}")
    return expected / cpu


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _idle_kib(cmd: list[str], env: dict[str, str], conns: int) -> float | None:
    """RSS per idle connection of a client holding `conns` open, against one holding 1."""
    sizes = []
    for n in (1, conns):
        proc = subprocess.Popen([a.replace("{n}", str(n)) for a in cmd], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            proc.kill()
            return None
        time.sleep(1.0)  # let it settle (idle memory, not a wait for an event)
        sizes.append(_rss_kib(proc.pid))
        proc.stdin.write("done\n")
        proc.stdin.close()
        proc.wait(timeout=120)
    return round((sizes[1] - sizes[0]) / (conns - 1), 1)


HOLD_EVT = """
let n = 1
let url = ""
connection user { url = url; connect_timeout = 300s }
on project start {
    for i in range(n) { open user }
    print "ready"
}
on input end { stop user }
"""


def _one_round(cmd: list[str]) -> list[str]:
    """A generator's command with one round trip per connection."""
    out = list(cmd)
    if "rounds=" in " ".join(out):  # evt: --set rounds=N
        return [("rounds=1" if a.startswith("rounds=") else a) for a in out]
    out[4] = "1"  # websockets_load.py URL C N
    return out


def _marginal(total: int, users: int, full: list[float], one: list[float]) -> int:
    """Round trips per CPU-second of the round trips after each connection's first: the
    full run's CPU less that of the run with one round trip each (medians)."""
    cpu_full = statistics.median(total / r for r in full)
    cpu_one = statistics.median(users / r for r in one)
    return round((total - users) / max(cpu_full - cpu_one, 1e-9))


def with_bytecode(env: dict[str, str]) -> dict[str, str]:
    """`env` with Python's bytecode cache on, kept under bench/out (see the docstring)."""
    out = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out["PYTHONPYCACHEPREFIX"] = str(BENCH / "out" / "pycache")
    return out


def bench_load(quick: bool, repeats: int, env: dict[str, str], server: Any) -> dict[str, Any]:
    """`server` is a started bench.run.Server (the websockets echo server)."""
    url = f"ws://127.0.0.1:{server.port}/"
    shapes = QUICK_SHAPES if quick else SHAPES
    out: dict[str, Any] = {"server": server.name, "shapes": {}}
    env = with_bytecode(env)
    for warm in ([PY, "-m", "lang", "run", "--set", f"url={url}", "--set", "users=1", "--set",
                  "rounds=1", str(ROOT / "examples" / "load.evt")],
                 [PY, str(BENCH / "websockets_load.py"), url, "1", "1", "--loop", "uvloop"]):
        subprocess.run(warm, env=env, capture_output=True, timeout=300, check=True)
    for users, rounds in shapes.items():
        total = users * rounds
        evt_cmd = [PY, "-m", "lang", "run", "--set", f"url={url}", "--set", f"users={users}",
                   "--set", f"rounds={rounds}", str(ROOT / "examples" / "load.evt")]
        ws_cmd = [PY, str(BENCH / "websockets_load.py"), url, str(users), str(rounds),
                  "--loop", "uvloop"]
        evt_r, ws_r, evt_1, ws_1 = [], [], [], []
        for _ in range(repeats):
            evt_r.append(_run_generator(evt_cmd, env, total))
            ws_r.append(_run_generator(ws_cmd, env, total))
            # the same connections with one round trip each: what start-up and the
            # connections cost, so that the round trips after the first can be told apart
            evt_1.append(_run_generator(_one_round(evt_cmd), env, users))
            ws_1.append(_run_generator(_one_round(ws_cmd), env, users))
        e, w = statistics.median(evt_r), statistics.median(ws_r)
        out["shapes"][f"{users} conns x {rounds}"] = {
            "evt_rtt_per_cpu_s": round(e), "websockets_rtt_per_cpu_s": round(w),
            "ratio": round(e / w, 2),
            "evt_marginal": _marginal(total, users, evt_r, evt_1),
            "websockets_marginal": _marginal(total, users, ws_r, ws_1),
            "evt_cpu_1_round_s": round(statistics.median(users / r for r in evt_1), 3),
            "websockets_cpu_1_round_s": round(statistics.median(users / r for r in ws_1), 3)}
    hold = BENCH / "out" / "hold.evt"
    hold.parent.mkdir(exist_ok=True)
    hold.write_text(HOLD_EVT)
    conns = 200 if quick else IDLE_CONNS
    out["idle_kib"] = {
        "evt": _idle_kib([PY, "-m", "lang", "run", "--set", f"url={url}", "--set", "n={n}",
                          str(hold)], env, conns),
        "websockets": _idle_kib([PY, str(BENCH / "websockets_load.py"), url, "{n}", "0",
                                 "--hold", "--loop", "uvloop"], env, conns),
        "conns": conns}
    return out


def report_load(res: dict[str, Any]) -> None:
    print(f"\n## load (evt as a load generator vs a websockets-library client, against "
          f"{res['server']}; round trips per CPU-second of the generator, bytecode cached)")
    print("| shape | evt | websockets client | ratio (goal >= 1.0) |")
    print("|---|---:|---:|---:|")
    for shape, v in res["shapes"].items():
        print(f"| {shape} | {v['evt_rtt_per_cpu_s']:,} | {v['websockets_rtt_per_cpu_s']:,} | "
              f"{v['ratio']} |")
    print("\nthe same, apart: CPU-s of start-up and the connections (each with one round "
          "trip), and round trips per CPU-second after each connection's first")
    print("| shape | evt: 1 round trip each | websockets | evt: the rest | websockets | "
          "ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for shape, v in res["shapes"].items():
        if "evt_marginal" in v:
            print(f"| {shape} | {v['evt_cpu_1_round_s']} s | {v['websockets_cpu_1_round_s']} s"
                  f" | {v['evt_marginal']:,} | {v['websockets_marginal']:,} | "
                  f"{v['evt_marginal'] / v['websockets_marginal']:.2f} |")
    idle = res["idle_kib"]
    print(f"\nidle memory per client connection ({idle['conns']:,} open): evt {idle['evt']} KiB, "
          f"websockets {idle['websockets']} KiB")
    sys.stdout.flush()
