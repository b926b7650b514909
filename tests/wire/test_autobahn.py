"""Autobahn|Testsuite, the industry's WebSocket conformance suite, against evt in both roles.

The fast profile (every case but 12.* and 13.*, the compression ones) runs here; every case
must end OK, NON-STRICT or INFORMATIONAL. The full run (all 517 cases, compression on) is a
documented command: `python tests/wire/test_autobahn.py --full` (see RELIABILITY.md).

wstest runs on Python 2.7: `.ci/setup_wstest.sh PREFIX` installs it without touching the
system, and `.ci/run` does so before the tests (it exports EVT_WSTEST). Without it the tests
skip, loudly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "autobahn"
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
FAST_EXCLUDE = ["12.*", "13.*"]


def wstest_path() -> str | None:
    candidates = [os.environ.get("EVT_WSTEST"), str(ROOT / ".ci" / "wstest" / "wstest")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)




def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)  # polling a port that another process opens: no event to wait on
    raise TimeoutError(f"nothing listens on {port}")


def evt(*args: str, **kw: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "lang", "run", *args], env=env, **kw)  # type: ignore[call-overload]


def results(outdir: Path) -> dict[str, dict[str, str]]:
    """{case id: {"behavior": ..., "behaviorClose": ...}} of the single agent reported."""
    index = json.loads((outdir / "index.json").read_text())
    (agent,) = index.values()
    return {case: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
            for case, r in agent.items()}


def failures(res: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {c: r for c, r in res.items()
            if r["behavior"] not in PASSING or r["behaviorClose"] not in PASSING}


def by_category(res: dict[str, dict[str, str]]) -> dict[str, str]:
    out: dict[str, list[int]] = {}
    for case, r in res.items():
        cat = case.split(".")[0]
        tried_passed = out.setdefault(cat, [0, 0])
        tried_passed[0] += 1
        tried_passed[1] += r["behavior"] in PASSING and r["behaviorClose"] in PASSING
    return {cat: f"{p}/{t}" for cat, (t, p) in sorted(out.items(), key=lambda kv: int(kv[0]))}


def run_server_role(wstest: str, workdir: Path, exclude: list[str], compression: bool,
                    timeout: float) -> dict[str, dict[str, str]]:
    """wstest -m fuzzingclient against the evt echo server."""
    port = free_port()
    server = evt("--set", f"listen=127.0.0.1:{port}", "--set",
                 f"compression={'true' if compression else 'false'}",
                 str(HERE / "echo_server.evt"), stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        spec = {"outdir": str(workdir / "servers"), "cases": ["*"], "exclude-cases": exclude,
                "exclude-agent-cases": {},
                "servers": [{"agent": "evt", "url": f"ws://127.0.0.1:{port}"}]}
        (workdir / "fuzzingclient.json").write_text(json.dumps(spec))
        subprocess.run([wstest, "-m", "fuzzingclient", "-s", "fuzzingclient.json"],
                       cwd=workdir, check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        assert server.poll() is None, "the evt server died during the suite"
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results(workdir / "servers")


def run_client_role(wstest: str, workdir: Path, exclude: list[str], compression: bool,
                    timeout: float) -> dict[str, dict[str, str]]:
    """wstest -m fuzzingserver, with the evt client script running every case."""
    port = free_port()
    spec = {"url": f"ws://127.0.0.1:{port}", "outdir": str(workdir / "clients"),
            "cases": ["*"], "exclude-cases": exclude, "exclude-agent-cases": {}}
    (workdir / "fuzzingserver.json").write_text(json.dumps(spec))
    # --webport=0: no web UI on port 8080, which another run on the machine may hold
    suite = subprocess.Popen([wstest, "-m", "fuzzingserver", "--webport=0", "-s",
                              "fuzzingserver.json"],
                             cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, suite)
        client = evt("--set", f"url=ws://127.0.0.1:{port}", "--set",
                     f"compression={'true' if compression else 'false'}",
                     str(HERE / "client.evt"), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
        out, err = client.communicate(timeout=timeout)
        assert "Traceback" not in err, err
        assert out.startswith("ran "), (out, err[-2000:])
    finally:
        suite.terminate()
        suite.wait(timeout=30)
    return results(workdir / "clients")


@pytest.fixture(scope="module")
def wstest() -> str:
    path = wstest_path()
    if path is None:
        message = ("Autobahn's wstest is not installed: run `bash .ci/setup_wstest.sh "
                   ".ci/wstest` (CI does it) -- THE CONFORMANCE TESTS DID NOT RUN")
        warnings.warn(message, stacklevel=1)
        print(f"\nWARNING: {message}", file=sys.stderr)
        pytest.skip(message)
    return path


@pytest.mark.slow
@pytest.mark.timeout(960)  # (pytest-timeout's 120 s would cut the suite's own 900 s limit)
def test_autobahn_server_role(wstest: str, tmp_path: Path) -> None:
    res = run_server_role(wstest, tmp_path, FAST_EXCLUDE, compression=False, timeout=900)
    assert len(res) > 200
    assert failures(res) == {}, by_category(res)


@pytest.mark.slow
@pytest.mark.timeout(960)  # (pytest-timeout's 120 s would cut the suite's own 900 s limit)
def test_autobahn_client_role(wstest: str, tmp_path: Path) -> None:
    res = run_client_role(wstest, tmp_path, FAST_EXCLUDE, compression=False, timeout=900)
    assert len(res) > 200
    assert failures(res) == {}, by_category(res)


if __name__ == "__main__":
    # the documented full run: python tests/wire/test_autobahn.py [--full] [--keep DIR]
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Run Autobahn|Testsuite against evt")
    ap.add_argument("--full", action="store_true", help="all cases, compression on")
    ap.add_argument("--keep", help="write the reports here (default: a temporary directory)")
    a = ap.parse_args()
    tool = wstest_path()
    if tool is None:
        sys.exit("wstest is not installed: bash .ci/setup_wstest.sh .ci/wstest")
    base = Path(a.keep or tempfile.mkdtemp(prefix="evt-autobahn-"))
    exclude = [] if a.full else FAST_EXCLUDE
    for role, runner in (("server", run_server_role), ("client", run_client_role)):
        work = base / role
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        res = runner(tool, work, exclude, a.full, 3600)
        bad = failures(res)
        print(f"{role} role: {len(res)} tried, {len(res) - len(bad)} passed "
              f"({time.monotonic() - started:.0f} s); by category: {by_category(res)}")
        for case, r in sorted(bad.items()):
            print(f"  {case}: {r}")
    print(f"reports: {base}")
