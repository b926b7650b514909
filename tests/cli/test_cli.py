"""The `evt` command line in a subprocess: exit codes, options, `args`, standard input,
signals and a closed standard output (SPEC §10, §8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, default_signals, run_cli, write

HELLO = """
on project start { print "hello" }
"""


def popen(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "lang", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_signals, **kw)


def no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert "internal error" not in err


# ---------------------------------------------------------------- general


def test_version() -> None:
    r = run_cli(["--version"])
    assert r.code == 0
    assert r.out.strip() == "evt 0.1.0"


def test_python_m_lang_runs_a_script(tmp_path: Path) -> None:
    path = write(tmp_path, HELLO)
    r = run_cli(["run", str(path)])
    assert (r.code, r.out, r.err) == (0, "hello\n", "")


def test_no_command_is_a_usage_error() -> None:
    r = run_cli([])
    assert r.code == 2
    assert r.out == ""
    assert "usage" in r.err.lower()


# ---------------------------------------------------------------- exit codes of `run`


def test_exit_0_on_natural_end(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print "start" }
        after 20ms { print "late" }
        on project stop { print "stop" }
    """)
    r = run_cli(["run", str(path)])
    assert r.code == 0
    assert r.out.splitlines() == ["start", "late", "stop"]
    assert r.err == ""


def test_exit_1_on_runtime_error(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print [1][5] }
        on project start { print "goes on" }
    """)
    r = run_cli(["run", str(path)])
    assert r.code == 1
    assert r.out.splitlines() == ["goes on"]
    assert f"{path}:2:29: runtime error: index 5 is out of range" in r.err
    no_traceback(r.err)


def test_exit_1_on_failed_assert(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { assert 2 < 1, "nope" }
        on project stop { print "stop" }
    """)
    r = run_cli(["run", str(path)])
    assert r.code == 1
    assert r.out.splitlines() == ["stop"]
    assert r.err.startswith(f"{path}:2:20: assertion failed: nope\n")


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_with_code(tmp_path: Path, code: int) -> None:
    path = write(tmp_path, f"""
        on project start {{ exit {code} }}
        every 1s {{ print "never" }}
        on project stop {{ print "stop" }}
    """)
    r = run_cli(["run", str(path)])
    assert r.code == code
    assert r.out.splitlines() == ["stop"]


def test_exit_2_on_missing_file(tmp_path: Path) -> None:
    r = run_cli(["run", str(tmp_path / "nope.evt")])
    assert r.code == 2
    assert r.out == ""
    assert "nope.evt" in r.err
    no_traceback(r.err)


def test_exit_2_on_bad_option(tmp_path: Path) -> None:
    path = write(tmp_path, HELLO)
    r = run_cli(["run", "--bogus", str(path)])
    assert r.code == 2
    assert r.out == ""
    assert "--bogus" in r.err


def test_exit_2_on_set_of_an_unknown_name(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let known = 1
        on project start { print "ran" }
    """)
    r = run_cli(["run", "--set", "unknown=5", str(path)])
    assert r.code == 2
    assert r.out == ""
    assert "unknown" in r.err
    no_traceback(r.err)


def test_exit_2_on_set_without_a_value(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let n = 1
        on project start { print "ran" }
    """)
    r = run_cli(["run", "--set", "n", str(path)])
    assert r.code == 2
    assert r.out == ""


def test_exit_3_on_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start {
            print (
        }
    """, name="bad.evt")
    r = run_cli(["run", str(path)])
    assert r.code == 3
    assert r.out == ""
    assert r.err.startswith(f"{path}:4:1: error: ")
    for internal in ("Token(", "$END", "RBRACE", "Traceback"):
        assert internal not in r.err


def test_exit_3_on_check_error_before_anything_runs(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print "must not run" }
        on project stop { print "must not run either" }
        on event e { print nope }
    """)
    r = run_cli(["run", str(path)])
    assert r.code == 3
    assert r.out == ""
    assert f"{path}:4:20: error: unknown name 'nope'" in r.err


def test_diagnostics_use_the_file_as_given(tmp_path: Path) -> None:
    write(tmp_path, """
        on project start { print 1 / 0 }
    """, name="rel.evt")
    r = run_cli(["run", "rel.evt"], cwd=tmp_path)
    assert r.code == 1
    assert r.err.startswith("rel.evt:2:28: runtime error: division by zero\n")


# ---------------------------------------------------------------- `check`


def test_check_clean_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let n = 1
        on project start { print n }
        on project stop { print 1 / 0 }
    """)
    r = run_cli(["check", str(path)])
    assert (r.code, r.out, r.err) == (0, "", "")


def test_check_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start {
            print missing_one
            print missing_two
        }
    """)
    r = run_cli(["check", str(path)])
    assert r.code == 3
    assert r.out == ""
    assert f"{path}:3:11: error: unknown name 'missing_one'" in r.err
    assert f"{path}:4:11: error: unknown name 'missing_two'" in r.err


def test_check_stops_at_a_syntax_error_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print nope }
        on project start { print 1 + }
        on project start { print ) }
    """)
    r = run_cli(["check", str(path)])
    assert r.code == 3
    assert f"{path}:3:30: error: expected an expression, found '}}'" in r.err
    assert "nope" not in r.err and ":4:" not in r.err
    assert r.err.rstrip().endswith(f"1 error in {path} (checking stops at a syntax error)")


def test_check_several_files(tmp_path: Path) -> None:
    good = write(tmp_path, HELLO, name="good.evt")
    bad = write(tmp_path, """
        on project start { print nope }
    """, name="bad.evt")
    r = run_cli(["check", str(good), str(bad)])
    assert r.code == 3
    assert "bad.evt:2:26: error: unknown name 'nope'" in r.err
    assert "good.evt" not in r.err
    assert run_cli(["check", str(good), str(good)]).code == 0


def test_check_missing_file(tmp_path: Path) -> None:
    r = run_cli(["check", str(tmp_path / "nope.evt")])
    assert r.code == 2
    no_traceback(r.err)


# ---------------------------------------------------------------- --set and args


SETS = """
let n = 1
let flag = false
let xs = []
let url = "default"
let ratio = 0.5
let name = "x"
on project start {
    print n + 1, type(n)
    print flag, type(flag)
    print xs, type(xs)
    print url, type(url)
    print ratio * 2
    print name
}
"""


def test_set_reads_evt_literals_and_plain_strings(tmp_path: Path) -> None:
    path = write(tmp_path, SETS)
    r = run_cli(["run", "--set", "n=41", "--set", "flag=true", "--set", 'xs=[1, "a"]',
                 "--set", "url=ws://h:1/", "--set", "ratio=2.5", "--set", 'name="a b"',
                 str(path)])
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["42 int", "true bool", '[1, "a"] list', "ws://h:1/ string",
                                  "5.0", "a b"]


def test_without_set_the_script_values_hold(tmp_path: Path) -> None:
    path = write(tmp_path, SETS)
    r = run_cli(["run", str(path)])
    assert r.out.splitlines() == ["2 int", "false bool", "[] list", "default string", "1.0",
                                  "x"]


def test_args_after_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print args, len(args) }
    """)
    r = run_cli(["run", str(path), "one", "2", "-v", "--set", "x=1"])
    assert r.code == 0
    assert r.out.splitlines() == ['["one", "2", "-v", "--set", "x=1"] 5']
    assert run_cli(["run", str(path)]).out.splitlines() == ["[] 0"]



def test_args_that_are_not_utf8_read_as_replacement_characters(tmp_path: Path) -> None:
    """Found in review: Python kept the bad byte as a lone surrogate, which encode(), print
    and send then refused; it reads as U+FFFD, as env() reads the environment."""
    path = write(tmp_path, """
        on project start { print args[0], len(args[0]), len(encode(args[0])) }
    """)
    r = run_cli(["run", str(path), os.fsdecode(b"a\xffb")])
    assert (r.code, r.err) == (0, "")
    assert r.out.splitlines() == ["a\ufffdb 3 5"]



@pytest.mark.parametrize("fault, message", [
    ('let m = {}\n print m.id', 'runtime error: no key "id"'),
    ('send c "x"', "websocket error: c: not connected"),
])
def test_fail_fast_ends_the_program_at_the_first_error(tmp_path: Path, fault: str,
                                                       message: str) -> None:
    """Found in a user trial: a test script whose handler fails goes on, with its server
    listening, until something kills it; --fail-fast ends it there, as a failed assert does."""
    path = write(tmp_path, f"""
        server s {{ listen = "127.0.0.1:0" }}
        connection c {{ url = "ws://127.0.0.1:9/" }}
        on project start {{
            start s
            {fault}
            print "not reached"
        }}
        on project stop {{ print "stopping" }}
    """)
    r = run_cli(["run", "--fail-fast", str(path)])
    assert r.code == 1
    assert message in r.err and "Traceback" not in r.err
    assert r.out.splitlines() == (["stopping"] if "runtime" in message
                                  else ["not reached", "stopping"])


def test_verbose_option_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, HELLO)
    r = run_cli(["run", "-v", str(path)])
    assert r.code == 0
    assert r.out == "hello\n"


# ---------------------------------------------------------------- standard input


def test_on_input_reads_piped_lines_and_ends_at_eof(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let count = 0
        on input as line {
            count = count + 1
            print "got", line, len(line)
        }
        on project stop { print "lines", count }
    """)
    r = run_cli(["run", str(path)], input="a\nbb\n\nlast")
    assert r.code == 0
    assert r.out.splitlines() == ["got a 1", "got bb 2", "got  0", "got last 4", "lines 4"]
    assert r.err == ""


def test_on_input_with_empty_stdin(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on input { print "never" }
        on project stop { print "stop" }
    """)
    r = run_cli(["run", str(path)], input="")
    assert r.code == 0
    assert r.out.splitlines() == ["stop"]


def test_input_lines_are_handled_in_order_even_when_a_handler_waits(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on input as line {
            print "begin", line
            wait 10ms
            print "end", line
        }
    """)
    r = run_cli(["run", str(path)], input="1\n2\n3\n")
    assert r.out.splitlines() == ["begin 1", "end 1", "begin 2", "end 2", "begin 3", "end 3"]


# ---------------------------------------------------------------- signals and pipes


TICKER = """
every 50ms { print "tick" }
on project stop { print "stopped" }
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_the_program_and_runs_project_stop(tmp_path: Path, signum: int,
                                                       code: int) -> None:
    path = write(tmp_path, TICKER)
    proc = popen(["run", str(path)])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "tick\n"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code
    lines = out.splitlines()
    assert lines[-1] == "stopped"
    assert set(lines[:-1]) <= {"tick"}
    no_traceback(err)


def test_sigint_interrupts_a_busy_loop(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print "looping"; while true { } }
        on project stop { print "stopped" }
    """)
    proc = popen(["run", str(path)])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "looping\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert out.splitlines() == ["stopped"]
    no_traceback(err)


@pytest.mark.parametrize("source", [
    'every 5ms { print "line" }',
    'on project start { for i in range(1000000) { print i } }',
])
def test_closed_stdout_ends_quietly(tmp_path: Path, source: str) -> None:
    path = write(tmp_path, source + '\non project stop { print "bye" }\n')
    proc = popen(["run", str(path)])
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        assert first in ("line\n", "0\n")
        proc.stdout.close()
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    no_traceback(err)
    assert "BrokenPipe" not in err
    assert proc.returncode in (0, 1)


# ---------------------------------------------------------------- no Python tracebacks


@pytest.mark.parametrize("stmt", [
    "print len(5)",
    "let x = 5; print x[0]",
    "for i in 5 { }",
    'let s = "abc"; s.k = 1',
    "print {a: 1}.b",
])
def test_runtime_errors_show_no_python_traceback(tmp_path: Path, stmt: str) -> None:
    path = write(tmp_path, f"""
        on project start {{
            {stmt}
        }}
    """)
    r = run_cli(["run", str(path)])
    assert r.code == 1
    assert f"{path}:3:" in r.err
    assert "runtime error" in r.err
    no_traceback(r.err)


def test_a_terminal_that_cannot_show_a_character_gets_an_escape(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print "h\\u{e9}llo \\u{1f600}"; print nope }
    """)
    r = run_cli(["run", str(path)], env={"PYTHONIOENCODING": "ascii"})
    assert "Traceback" not in r.err
    assert r.code == 3  # the check error, reported in ASCII too
    path = write(tmp_path, """
        on project start { print "h\\u{e9}llo \\u{1f600}" }
    """)
    r = run_cli(["run", str(path)], env={"PYTHONIOENCODING": "ascii"})
    assert (r.code, r.out, r.err) == (0, "h\\xe9llo \\U0001f600\n", "")


def test_ctrl_c_while_a_big_file_is_checked_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """Checking 10 MB takes seconds: Ctrl-C then was a KeyboardInterrupt traceback (exit -2)."""
    import time

    from helpers import ENV_FOR_CLI

    path = tmp_path / "big.evt"
    path.write_text("on project start {\n" + "    print 1 + 2 * 3\n" * 600_000 + "}\n")
    proc = subprocess.Popen([sys.executable, "-m", "lang", "check", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV_FOR_CLI,
                            preexec_fn=default_signals)
    try:
        # wait until it is parsing: a second of CPU (start-up takes a fifth of that; the parse
        # of 600,000 lines takes a minute), with a hard limit
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and _cpu(proc.pid) < 1.0:
            time.sleep(0.02)
        assert proc.poll() is None, "the check ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert b"Traceback" not in err


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
