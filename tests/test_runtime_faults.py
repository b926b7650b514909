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

