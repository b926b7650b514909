"""`evt run --workers N` (SPEC §16): real processes, a real port shared with SO_REUSEPORT and
a real `websockets` client; the workers' output, signals, exit codes, standard input, the
files each worker writes, and no worker left behind."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from helpers import ENV_FOR_CLI, default_signals, free_port, run_cli, write
from helpers.process import Child, evt_process
from websockets.asyncio.client import connect

from lang.workers import MAX_LINE, Pipe, numbered, warnings_for, worker_argv

T = 30  # seconds: the hard limit on any one wait

SERVE = """
let port = 0
server srv { listen = "127.0.0.1:${port}" }
on project start { start srv }
on websocket start srv from p { send p "${worker()}" }
on project stop { print "stop", worker() }
"""

IDLE = """
on project start { print "ready", worker() }
every 1h { }
on project stop { print "stop", worker() }
"""


def running_with(text: str) -> list[int]:
    """The processes (zombies aside) whose command line holds `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def no_worker_left(tmp_path: Path) -> Iterator[None]:
    """After each test, no process runs a script of its own (every worker names it)."""
    yield
    assert running_with(str(tmp_path)) == []


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(x) for x in f.read().split()]


def wait_gone(pids: list[int], timeout: float = T) -> None:
    """Wait until each process has ended (a pidfd is readable once it has)."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, f"worker {pid} is still running"
        finally:
            os.close(fd)


async def workers_ready(child: Child, n: int, pattern: str, stream: str = "out") -> list[int]:
    """Wait for a line matching `pattern` (with {i} for the index) from each of n workers
    on the supervisor's stdout (or stderr); their pids."""
    for i in range(n):
        await getattr(child, stream).wait_for("^" + pattern.format(i=i) + "$")
    pids = children_of(child.pid)
    assert len(pids) == n
    return pids


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err


# ---------------------------------------------------------------- a shared port


@pytest.mark.anyio
async def test_connections_are_spread_over_the_workers_and_sigterm_stops_all(
        tmp_path: Path) -> None:
    port = free_port()
    async with evt_process(tmp_path, SERVE, "--workers", "2", "--set", f"port={port}") as child:
        pids = await workers_ready(
            child, 2, rf"\[{{i}}\] srv: listening on ws://127\.0\.0\.1:{port}/", "err")
        seen: set[str] = set()
        with anyio.fail_after(T):
            # the kernel picks a worker by a hash of the client's address and port
            for _ in range(200):
                async with connect(f"ws://127.0.0.1:{port}/") as ws:
                    seen.add(str(await ws.recv()))
                if seen == {"0", "1"}:
                    break
        assert seen == {"0", "1"}
        child.proc.send_signal(signal.SIGTERM)
        assert await child.exited() == 143
    assert sorted(child.out.text.splitlines()) == ["[0] stop 0", "[1] stop 1"]
    assert "warning" not in child.err.text  # no broadcast: nothing to warn about
    no_traceback(child.err.text)
    wait_gone(pids)


@pytest.mark.anyio
async def test_sigint_stops_every_worker_cleanly(tmp_path: Path) -> None:
    # each worker gets it once, from the supervisor, and runs its `on project stop`
    async with evt_process(tmp_path, IDLE, "--workers", "3") as child:
        pids = await workers_ready(child, 3, r"\[{i}\] ready {i}")
        child.proc.send_signal(signal.SIGINT)
        assert await child.exited() == 130
    assert sorted(child.out.text.splitlines()) == [
        "[0] ready 0", "[0] stop 0", "[1] ready 1", "[1] stop 1", "[2] ready 2", "[2] stop 2"]
    assert child.err.text == ""
    wait_gone(pids)


def test_ctrl_c_on_a_terminal_reaches_each_worker_once(tmp_path: Path) -> None:
    # the terminal signals its foreground process group, the supervisor's; were the workers
    # in it, they would get Ctrl-C twice (the terminal's and the one passed on), and a
    # second signal cuts a shutdown short
    pexpect = pytest.importorskip("pexpect")
    path = write(tmp_path, IDLE)
    child = pexpect.spawn(sys.executable, ["-m", "lang", "run", "--workers", "2", str(path)],
                          env=ENV_FOR_CLI, encoding="utf-8", timeout=T)
    pending = {r"\[0\] ready 0", r"\[1\] ready 1"}
    while pending:
        order = sorted(pending)
        pending.discard(order[child.expect(order)])
    pids = children_of(child.pid)
    foreground = os.tcgetpgrp(child.child_fd)
    assert os.getpgid(child.pid) == foreground
    assert all(os.getpgid(pid) != foreground for pid in pids)
    child.sendintr()
    child.expect(pexpect.EOF)
    wait_gone([child.pid])
    child.close()
    assert child.exitstatus == 130
    text = child.before.replace("^C", "")  # (the terminal echoes the Ctrl-C)
    assert sorted(re.findall(r"^\[\d\] stop \d\r?$", text, re.M)) == ["[0] stop 0\r",
                                                                   "[1] stop 1\r"]
    wait_gone(pids)


@pytest.mark.anyio
async def test_a_worker_killed_is_told_and_its_code_is_the_worst(tmp_path: Path) -> None:
    async with evt_process(tmp_path, IDLE, "--workers", "2") as child:
        pids = await workers_ready(child, 2, r"\[{i}\] ready {i}")
        os.kill(pids[1], signal.SIGKILL)
        await child.err.wait_for(r"^evt: worker 1 was killed by SIGKILL; 1 other still running$")
        child.proc.send_signal(signal.SIGINT)
        assert await child.exited() == 137  # 128 + SIGKILL beats 130
    assert "[0] stop 0" in child.out.text.splitlines()
    wait_gone(pids)


@pytest.mark.anyio
async def test_no_worker_outlives_a_killed_supervisor(tmp_path: Path) -> None:
    async with evt_process(tmp_path, IDLE, "--workers", "2") as child:
        pids = await workers_ready(child, 2, r"\[{i}\] ready {i}")
        child.proc.kill()
        await child.proc.wait()
    wait_gone(pids)  # they got SIGTERM when it died


# ---------------------------------------------------------------- output and exit codes


def test_lines_are_prefixed_and_the_worst_exit_code_wins(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start {
            print "out", worker()
            print [1][5]
        }
        on project start { exit 10 + worker() }
    """)
    r = run_cli(["run", "--workers", "3", str(path)], timeout=T)
    assert r.code == 12
    assert sorted(r.lines) == ["[0] out 0", "[1] out 1", "[2] out 2"]
    errors = [line for line in r.err.splitlines() if "runtime error" in line]
    assert sorted(line[:4] for line in errors) == ["[0] ", "[1] ", "[2] "]
    assert all(f"{path}:4:14: runtime error: index 5 is out of range" in e for e in errors)
    # the two that end while others run are told; the last one's code is the exit code
    assert len([line for line in r.err.splitlines() if line.startswith("evt: worker ")]) == 2
    no_traceback(r.err)


def test_stdout_and_stderr_in_one_file_keep_their_order(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start {
            print "before", worker()
            print [1][5]
        }
        on project start { print "after", worker() }
    """)
    command = f"{sys.executable} -m lang run --workers 2 {path} 2>&1"
    r = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=T,
                       env=ENV_FOR_CLI)
    assert r.returncode == 1
    for i in (0, 1):
        mine = [line for line in r.stdout.splitlines() if line.startswith(f"[{i}] ")]
        assert mine[0] == f"[{i}] before {i}" and mine[-1] == f"[{i}] after {i}"
        assert "runtime error" in mine[1]


def test_every_line_comes_whole_and_none_is_lost(tmp_path: Path) -> None:
    xs = "x" * 60
    path = write(tmp_path, f'on project start {{ for i in range(5000) {{ '
                           f'print "line ${{i}} of ${{worker()}} {xs}" }} }}\n')
    r = run_cli(["run", "--workers", "2", str(path)], timeout=T)
    assert r.code == 0, r.err
    for i in (0, 1):
        mine = [line for line in r.lines if line.startswith(f"[{i}] ")]
        assert mine == [f"[{i}] line {n} of {i} {xs}" for n in range(5000)]
    assert len(r.lines) == 10000


def test_a_closed_stdout_ends_the_workers_quietly(tmp_path: Path) -> None:
    path = write(tmp_path, 'every 5ms { print "line" }\non project stop { print "bye" }\n')
    proc = subprocess.Popen([sys.executable, "-m", "lang", "run", "--workers", "2", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV_FOR_CLI, preexec_fn=default_signals)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() in ("[0] line\n", "[1] line\n")
        proc.stdout.close()
        err = proc.stderr.read()  # to its end: the supervisor and its workers have ended
        proc.wait(timeout=T)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    no_traceback(err)
    assert "BrokenPipe" not in err
    assert proc.returncode in (0, 1)


def test_one_worker_is_a_plain_run(tmp_path: Path) -> None:
    path = write(tmp_path, 'on project start { print "hello", worker(); exit 4 }\n')
    r = run_cli(["run", "--workers", "1", str(path)], timeout=T, env={"EVT_WORKER": "7"})
    assert (r.code, r.out, r.err) == (4, "hello 0\n", "")


def test_worker_is_0_when_run_alone(tmp_path: Path) -> None:
    path = write(tmp_path, 'on project start { print worker(), type(worker()) }\n')
    r = run_cli(["run", str(path)], timeout=T)
    assert (r.code, r.out) == (0, "0 int\n")


def test_standard_input_goes_to_worker_0(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on input as line { print "got", line, worker() }
        on input end { print "end", worker() }
    """)
    r = run_cli(["run", "--workers", "2", str(path)], input="a\nb\n", timeout=T)
    assert r.code == 0
    assert [x for x in r.lines if x.startswith("[0] ")] == ["[0] got a 0", "[0] got b 0",
                                                             "[0] end 0"]
    assert [x for x in r.lines if x.startswith("[1] ")] == ["[1] end 1"]


def test_each_worker_writes_its_own_files(tmp_path: Path) -> None:
    path = write(tmp_path, 'on project start { count hits worker() + 1 }\n')
    out = tmp_path / "m.jsonl"
    r = run_cli(["run", "--workers", "2", "--metrics-out", str(out), str(path)], timeout=T)
    assert r.code == 0, r.err
    assert not out.exists()
    for i in (0, 1):
        assert '"hits"' in (tmp_path / f"m.{i}.jsonl").read_text(encoding="utf-8")


# ---------------------------------------------------------------- refused before starting


def test_a_bad_script_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, "on project start { print nope(1) }\n")
    r = run_cli(["run", "--workers", "3", str(path)], timeout=T)
    assert r.code == 3
    assert r.err.count("unknown function 'nope'") == 1 and "[0]" not in r.err
    assert r.err.splitlines()[-1] == f"1 error in {path}"


def test_a_bad_option_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'on project start { print "x" }\n')
    r = run_cli(["run", "--workers", "2", "--set", "nope=1", str(path)], timeout=T)
    assert (r.code, r.out) == (2, "")
    assert r.err == "evt: error: --set nope: the script has no top-level 'let nope'\n"


@pytest.mark.parametrize("n", ["0", "-2"])
def test_fewer_than_one_worker_is_a_usage_error(tmp_path: Path, n: str) -> None:
    path = write(tmp_path, 'on project start { print "x" }\n')
    r = run_cli(["run", "--workers", n, str(path)], timeout=T)
    assert (r.code, r.out) == (2, "")
    assert r.err.startswith("evt: error: --workers takes a number of processes, at least 1")


def test_a_worker_that_cannot_start_is_an_error_line(tmp_path: Path) -> None:
    path = write(tmp_path, IDLE)
    code = ("import sys; from lang import cli; sys.executable = '/nonexistent/python'; "
            f"cli.main(['run', '--workers', '2', {str(path)!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=T, env=ENV_FOR_CLI, preexec_fn=default_signals)
    assert r.returncode == 1
    assert r.stderr == "evt: error: cannot start worker 0: No such file or directory\n"


# ---------------------------------------------------------------- the warning at start


BROADCAST = """
server srv { listen = "127.0.0.1:${port}" }
let port = 0
func relay(m) { broadcast srv m }
"""


def test_a_broadcast_without_a_cluster_is_warned_of_once(tmp_path: Path) -> None:
    path = write(tmp_path, BROADCAST)
    r = run_cli(["run", "--workers", "2", str(path)], timeout=T)
    assert r.code == 0
    assert r.err == ("evt: warning: --workers 2 without a cluster: a broadcast reaches only "
                     "the peers of its own worker (declare cluster { url = \"redis://...\" } "
                     "to reach them all)\n")


def test_warnings_for_the_script() -> None:
    from lang.syntax.parser import parse_module

    def warned(source: str) -> list[str]:
        return warnings_for(list(parse_module(source, "w.evt").decls), 2)

    assert warned(BROADCAST)[0].startswith("--workers 2 without a cluster")
    assert warned("server s { listen = \"127.0.0.1:8000\" }\n") == []
    assert warned("on project start { print 1 }\n") == []
    assert warned('server s { listen = "127.0.0.1:0" }\n') == [
        "--workers 2: server s listens on port 0, so each worker gets a port of its own; "
        "give it a fixed port to share one"]


# ---------------------------------------------------------------- the pieces


def test_worker_argv_keeps_every_option_but_workers() -> None:
    from lang.cli import _parser

    argv = ["run", "--workers", "2", "--set", "a=1", "--set=b=-x", "-v", "--trace",
            "--fail-fast", "--loop", "asyncio", "--virtual-time", "--record", "r.har",
            "--summary", "--threshold", "ws_errors == 0", "--metrics-out", "m.jsonl",
            "--metrics-listen", "127.0.0.1:9100", "--report-html", "rep", "-q",
            "--no-metrics", "s.evt", "x", "--y"]
    parser = _parser()
    opts = parser.parse_args(argv)
    again = vars(parser.parse_args(worker_argv(opts, 1)))
    assert again == {**vars(opts), "workers": None, "record": "r.1.har",
                     "metrics_out": "m.1.jsonl", "report_html": "rep.1",
                     "metrics_listen": "127.0.0.1:9101"}
    zero = parser.parse_args(["run", "--workers", "2", "--metrics-listen", "h:0", "s.evt"])
    assert "--metrics-listen=h:0" in worker_argv(zero, 1)


def test_numbered() -> None:
    assert numbered("run.har", 0) == "run.0.har"
    assert numbered("out/report", 3) == "out/report.3"
    assert numbered("a.b/m.jsonl", 1) == "a.b/m.1.jsonl"


def test_stream_passes_on_whole_lines_only() -> None:
    s = Pipe(0, b"[1] ", 1)
    assert s.lines(b"ab") == b""
    assert s.lines(b"c\nd") == b"[1] abc\n"
    assert s.lines(b"\n\ne") == b"[1] d\n[1] \n"
    assert s.lines(b"") == b"[1] e\n"  # at the end, a last line without its newline
    assert s.lines(b"") == b""
    long = b"x" * MAX_LINE
    assert s.lines(long) == b"[1] " + long + b"\n"  # a huge line is passed on in pieces
