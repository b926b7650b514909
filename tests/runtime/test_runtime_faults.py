"""Runtime faults found by an outside probe (issue 11): signals that must win over busy
handlers, SIGHUP, a standard output nobody reads, and standard input with backpressure.

Every test runs `python -m lang run` in a subprocess with real pipes and real signals; every
wait is on an event (a line read, the process ending) under a hard timeout.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import anyio
import pytest
from helpers import ENV_FOR_CLI, default_signals, write
from websockets.asyncio.client import connect

WAIT = 60  # seconds: a hard bound on any one wait, far above what a busy machine needs


def popen(args: list[str], **kw: object) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("preexec_fn", default_signals)
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


def line_of(stream: IO[bytes]) -> bytes:
    """One line from a child's pipe, read in a thread under the hard timeout."""
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    t.start()
    t.join(WAIT)
    assert got, f"no line within {WAIT}s"
    return got[0]


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
        assert line_of(proc.stdout) == b"started\n"
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
        assert line_of(proc.stdout) == b"ready\n"
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
        assert line_of(proc.stdout) == b"ready\n"
        proc.send_signal(signal.SIGHUP)  # pending before the line below can be read
        proc.stdin.write(b"after\n")
        proc.stdin.flush()
        assert line_of(proc.stdout) == b"got after\n"
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
        assert line_of(proc.stdout) == b"ready\n"
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
        assert line_of(proc.stdout) == b"ready\n"
        before = memory_mb(proc.pid, "VmRSS")
        for _ in range(400):
            proc.stdin.write(line)
        proc.stdin.write(b"END\n")
        proc.stdin.flush()
        assert line_of(proc.stdout) == b"all 401\n"
        peak = memory_mb(proc.pid, "VmHWM")
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = finish(proc)
    print(f"VmRSS before {before:.1f} MB, VmHWM after {peak:.1f} MB")
    assert peak - before < 100, (before, peak)
    assert proc.returncode == 143
    no_traceback(err)


# ---------------------------------------------------------------- fault 3: a blocked stdout


def full_pipe() -> tuple[int, int]:
    """A pipe already full: the first write to it blocks until someone reads."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    for size in (65536, 1):
        try:
            while True:
                os.write(w, b"." * size)
        except BlockingIOError:
            pass
    os.set_blocking(w, True)
    return r, w


async def readline(stream: IO[bytes]) -> str:
    """One line, read in a thread: the caller's fail_after bounds the wait."""
    line = await anyio.to_thread.run_sync(stream.readline, abandon_on_cancel=True)
    return line.decode()


async def listening_url(stream: IO[bytes]) -> str:
    """Read standard error up to the server's `listening on` line; its URL."""
    while True:
        line = await readline(stream)
        assert line, "evt ended before it listened"
        m = re.search(r"listening on (ws://\S+)", line)
        if m:
            return m.group(1)


FLOOD_SERVER = """
    server s { listen = "127.0.0.1:0" }
    on project start { start s; print "started" }
    on websocket receive s as m from p {
        if m == "flood" {
            print repeat("y", 1000000)
            send p "flooded"
        } else {
            send p "echo ${m}"
        }
    }
    on project stop { print "bye" }
"""


async def flood_then_echo(url: str) -> tuple[object, object]:
    """Client A makes the server print 1 MB; then client B, new, gets 20 answers. The two
    stay open; returns them."""
    a = await connect(url)
    await a.send("flood")
    assert await a.recv() == "flooded"
    b = await connect(url)
    for i in range(20):
        await b.send(f"m{i}")
        assert await b.recv() == f"echo m{i}"
    return a, b


def test_a_blocked_stdout_stalls_no_client_and_sigterm_gets_through(tmp_path: Path) -> None:
    """Standard output is a full pipe nobody reads: clients still connect and get answers,
    SIGTERM still runs the shutdown (clients get 1001), and what could not be written is
    told on standard error."""
    path = write(tmp_path, FLOOD_SERVER)
    r, w = full_pipe()
    proc = popen(["run", str(path)], stdout=w)
    os.close(w)
    assert proc.stderr is not None

    async def main() -> list[int | None]:
        with anyio.fail_after(WAIT):
            a, b = await flood_then_echo(await listening_url(proc.stderr))
            proc.send_signal(signal.SIGTERM)
            await a.wait_closed()
            await b.wait_closed()
            return [a.close_code, b.close_code]

    try:
        codes = anyio.run(main)
        proc.wait(timeout=WAIT)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
    assert codes == [1001, 1001]
    assert proc.returncode == 143
    # everything printed is lost: "started\n", 1000000 y and a newline, "bye\n"
    assert "evt: 1000013 bytes of standard output were lost" in err, err
    no_traceback(err)


def test_the_printing_client_waits_until_stdout_is_read(tmp_path: Path) -> None:
    """The client whose handler filled the buffer is not served until standard output is
    read; then it is, and nothing printed is lost or out of order."""
    path = write(tmp_path, FLOOD_SERVER)
    r, w = full_pipe()
    proc = popen(["run", str(path)], stdout=w)
    os.close(w)
    assert proc.stderr is not None
    read: list[bytes] = []
    reader = threading.Thread(target=lambda: read.extend(iter(lambda: os.read(r, 65536), b"")))

    async def main() -> None:
        with anyio.fail_after(WAIT):
            a, b = await flood_then_echo(await listening_url(proc.stderr))
            await a.send("after")  # waits in evt: A's handler printed into a full buffer
            reader.start()  # now standard output is read
            assert await a.recv() == "echo after"
            await a.close()
            await b.close()
            proc.send_signal(signal.SIGTERM)

    try:
        anyio.run(main)
        proc.wait(timeout=WAIT)
        reader.join(timeout=WAIT)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
    assert proc.returncode == 143
    out = b"".join(read).lstrip(b".")
    assert out == b"started\n" + b"y" * 1000000 + b"\nbye\n"
    assert "lost" not in err
    no_traceback(err)


BAD_HANDLER = """
    server s { listen = "127.0.0.1:0" }
    on project start { start s; print address(s) }
    on websocket receive s as m from p {
        send p "echo ${m}"
        let n = len(5)
    }
"""


def test_a_blocked_stderr_stalls_no_client(tmp_path: Path) -> None:
    """Standard error is a full pipe: each message's runtime error goes to a buffer, the
    answers still come, SIGTERM still ends the program."""
    path = write(tmp_path, BAD_HANDLER)
    r, w = full_pipe()
    proc = popen(["run", str(path)], stderr=w)
    os.close(w)
    assert proc.stdout is not None

    async def main() -> None:
        with anyio.fail_after(WAIT):
            address = (await readline(proc.stdout)).strip()
            async with connect(f"ws://{address}/") as c:
                for i in range(50):
                    await c.send(f"m{i}")
                    assert await c.recv() == f"echo m{i}"
            proc.send_signal(signal.SIGTERM)

    try:
        anyio.run(main)
        proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
    assert proc.returncode == 143


def test_a_line_of_stdin_over_16_mib_comes_in_pieces(tmp_path: Path) -> None:
    """Decided: a line longer than 16 MiB is handled in pieces (memory stays bounded), with
    one warning; \\r\\n ends a line as \\n does; bytes that are not UTF-8 read as U+FFFD."""
    path = write(tmp_path, 'on input as line { print len(line), line == "ok\\u{fffd}" }\n')
    big = 17 * 1024 * 1024
    proc = popen(["run", str(path)], stdin=subprocess.PIPE)
    out, err = proc.communicate(b"x" * big + b"\nok\xff\r\n", timeout=WAIT)
    assert proc.returncode == 0
    assert out.decode().splitlines() == [f"{16 * 1024 * 1024} false", f"{1024 * 1024} false",
                                         "3 true"]
    assert err.decode().count("longer than 16777216 bytes: it is handled in pieces") == 1
    no_traceback(err.decode())


def test_after_a_normal_end_a_signal_cuts_the_wait_for_a_blocked_stdout(tmp_path: Path
                                                                         ) -> None:
    """Decided: after a normal end evt waits for standard output to take what is buffered
    (nothing is dropped while it might still be read); a signal cuts that wait short."""
    path = write(tmp_path, """
        on project start { print repeat("x", 1000000); exit 0 }
        on project stop { let marker = len(5) }
    """)
    r, w = full_pipe()
    proc = popen(["run", str(path)], stdout=w)
    os.close(w)
    assert proc.stderr is not None
    try:
        line = line_of(proc.stderr).decode()  # the marker: the shutdown has begun
        assert "runtime error" in line, line
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
        err = line + proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
    assert proc.returncode == 143
    assert "evt: 1000001 bytes of standard output were lost" in err, err
    no_traceback(err)
