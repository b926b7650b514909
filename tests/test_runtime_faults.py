"""Runtime faults found by an outside probe (issue 11): signals that must win over busy
handlers, SIGHUP, a standard output nobody reads, and standard input with backpressure.

Every test runs `python -m lang run` in a subprocess with real pipes and real signals; every
wait is on an event (a line read, the process ending) under a hard timeout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ENV_FOR_CLI, write

WAIT = 60  # seconds: a hard bound on any one wait, far above what a busy machine needs


def popen(args: list[str], **kw: object) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "lang", *args], env=ENV_FOR_CLI,
                            **kw)  # type: ignore[call-overload]


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    """Wait for the process to end (hard timeout); kill it if it does not."""
    try:
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out.decode() if isinstance(out, bytes) else out or "", \
        err.decode() if isinstance(err, bytes) else err or ""


def no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert "internal error" not in err


# ---------------------------------------------------------------- fault 2: signals win


PING_PONG = """
    let a = 0
    let b = 0
    on change a { b = b + 1 }
    on change b { a = a + 1 }
    on project start { print "started"; a = 1 }
    on project stop { print "stopped" }
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_two_change_handlers_feeding_each_other(tmp_path: Path, signum: int,
                                                            code: int) -> None:
    path = write(tmp_path, PING_PONG)
    proc = popen(["run", str(path)])
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"started\n"
        proc.send_signal(signum)
    finally:
        out, err = finish(proc)
    assert proc.returncode == code
    assert out.splitlines() == ["stopped"]
    no_traceback(err)


# ---------------------------------------------------------------- SIGHUP


ECHO_INPUT = """
    on project start { print "ready" }
    on input as line { print "got", line }
    on project stop { print "stopped" }
"""


def test_sighup_runs_the_shutdown_as_sigterm_does(tmp_path: Path) -> None:
    path = write(tmp_path, ECHO_INPUT)
    proc = popen(["run", str(path)], stdin=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGHUP)
    finally:
        out, err = finish(proc)
    assert proc.returncode == 129
    assert out.splitlines() == ["stopped"]
    no_traceback(err)


def test_sighup_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    """As under `nohup`: the program goes on after a SIGHUP and ends normally."""
    path = write(tmp_path, ECHO_INPUT)
    proc = popen(["run", str(path)], stdin=subprocess.PIPE,
                 preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGHUP)  # pending before the line below can be read
        proc.stdin.write(b"after\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"got after\n"
    finally:  # communicate closes stdin: the end of input ends the program

        out, err = finish(proc)
    assert proc.returncode == 0
    assert out.splitlines() == ["stopped"]
    no_traceback(err)


def test_sighup_ends_a_repl_session_with_the_shutdown() -> None:
    proc = popen(["repl"], stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        proc.stdin.write(b'on project stop { print "stopped" }\nprint "ready"\n')
        proc.stdin.flush()
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=WAIT) == 129
    finally:
        out, err = finish(proc)
    assert out.splitlines() == ["stopped"]
    no_traceback(err)


# ---------------------------------------------------------------- fault 8: stdin backpressure


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def test_stdin_is_read_only_as_fast_as_a_slow_handler_takes_it(tmp_path: Path) -> None:
    """400 MiB of lines into a handler that waits a little for each: the memory of evt
    stays far below what it is sent (before the fix: it read everything at once)."""
    path = write(tmp_path, """
        every 1h { }
        let n = 0
        on project start { print "ready" }
        on input as line {
            n = n + 1
            if line == "END" { print "all", n }
            wait 2ms
        }
    """)
    line = b"x" * (1024 * 1024 - 1) + b"\n"  # 1 MiB
    proc = popen(["run", str(path)], stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"ready\n"
        before = memory_mb(proc.pid, "VmRSS")
        for _ in range(400):
            proc.stdin.write(line)
        proc.stdin.write(b"END\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"all 401\n"
        peak = memory_mb(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = finish(proc)
    print(f"VmRSS before {before:.1f} MB, VmHWM after {peak:.1f} MB")
    assert peak - before < 100, (before, peak)
    assert proc.returncode == 143
    no_traceback(err)
