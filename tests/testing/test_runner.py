"""`evt test` (SPEC §13) as a user runs it: the real command line on real files, its output
lines, exit codes, options and reports; the peers are real sockets (evt servers in the
test's own script, and a `websockets` server in this process).

Nothing here depends on how fast the machine is: a test that must hang is ended by
--timeout (a lower bound), and the parallel run is shown by a rendezvous that only a run of
4 tests at once can complete, not by a stopwatch."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
import websockets
from helpers.run import ENV_FOR_CLI, run_cli, write

FILE_LINE = re.compile(r"^(PASS|FAIL|SKIP) (\S+?)(?:::(.+?))?(?: \((\d+ ms|\d+\.\d s)\)|: (.*))?$")
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped in \d+\.\d s$")

MIXED = """\
    let n = 0
    server srv { listen = "127.0.0.1:0" }
    on websocket receive srv as m from p { send p "echo: ${m}" }
    connection c { url = "ws://${address(srv)}/" }
    on project start { n = n + 1 }
    on project stop { print "project stop ran" }

    test "echo" {
        start srv
        start c
        wait until connected(c) within 10s
        send c "hi"
        expect c as r within 10s
        assert r == "echo: hi"
    }
    test "sees the initial value" {
        n = n + 100
        assert n == 101, "n is ${n}"
    }
    test "sees the initial value too" {
        assert n == 1, "n is ${n}"
        print "out of the second"
    }
    test "fails" {
        assert n == 7, "n is ${n}"
    }
    test "later" { skip "the server has no such feature yet" }
    test "runtime error" { let x = [1][5] }
"""


def lines_of(out: str) -> list[tuple[str, str, str | None, str | None]]:
    found = []
    for line in out.splitlines():
        m = FILE_LINE.match(line)
        if m:
            found.append((m[1], m[3] or "", m[4], m[5]))
    return found


def test_output_lines_exit_code_and_isolation(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED, "mixed_test.evt")
    r = run_cli(["test", "-j", "2", str(path)])
    assert r.code == 1, r.out + r.err
    got = {name: (word, extra) for word, name, *extra in lines_of(r.out)}
    assert got["echo"][0] == "PASS", r.out
    assert got["sees the initial value"][0] == "PASS", r.out  # each test: a fresh program
    assert got["sees the initial value too"][0] == "PASS", r.out
    assert got["fails"][0] == "FAIL"
    assert got["later"] == ("SKIP", [None, "the server has no such feature yet"])
    assert got["runtime error"][0] == "FAIL"
    # a FAIL line is followed by its diagnostics, indented
    block = r.out.split(f"FAIL {path}::fails", 1)[1].splitlines()
    assert block[1] == f"    {path}:25:5: assertion failed: n is 1"
    assert block[2].strip() == 'assert n == 7, "n is ${n}"'
    assert "index 5 out of range" in r.out or "out of range" in r.out
    last = r.out.splitlines()[-1]
    m = SUMMARY.match(last)
    assert m and m.groups() == ("3", "2", "1"), last
    assert "Traceback" not in r.out + r.err


def test_exit_codes_0_2_and_3(tmp_path: Path) -> None:
    good = write(tmp_path, 'test "ok" { assert 1 + 1 == 2 }\n', "good_test.evt")
    assert run_cli(["test", str(good)]).code == 0
    bad = write(tmp_path, 'test "bad" { assert nope == 1 }\n', "bad_test.evt")
    r = run_cli(["test", str(good), str(bad)])
    assert r.code == 3, r.out + r.err
    assert f"PASS {good}::ok" in r.out  # the other files still run
    assert f"FAIL {bad}" in r.out
    assert "unknown name 'nope'" in r.out or "'nope'" in r.out
    syntax = write(tmp_path, 'test "x" { assert }\n', "syntax_test.evt")
    assert run_cli(["test", str(syntax)]).code == 3
    for args in (["test"], ["test", str(tmp_path / "missing_test.evt")],
                 ["test", "-j", "0", str(good)], ["test", "--timeout", "soon", str(good)],
                 ["test", "-k", "no such test", str(good)],
                 ["test", "--set", "nothing=1", str(good)]):
        r = run_cli(args)
        assert r.code == 2, (args, r.out, r.err)
        assert "Traceback" not in r.err


def test_discovery_finds_test_files_recursively_and_nothing_else(tmp_path: Path) -> None:
    body = 'test "t" { print "ran" }\n'
    for rel in ("a_test.evt", "test_b.evt", "sub/deeper/c_test.evt", "helper.evt",
                "sub/notatest.evt", "sub/test_x.txt", ".hidden/d_test.evt", "a_test.evt.bak"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(body, encoding="utf-8")
    r = run_cli(["test", "-j", "3", str(tmp_path)])
    assert r.code == 0, r.out + r.err
    ran = sorted(Path(name).relative_to(tmp_path).as_posix()
                 for word, name, *_ in (
                     (m[1], m[2]) for m in map(FILE_LINE.match, r.out.splitlines()) if m))
    assert ran == ["a_test.evt", "sub/deeper/c_test.evt", "test_b.evt"]
    # a file named on the command line runs whatever its name
    r = run_cli(["test", str(tmp_path / "helper.evt")])
    assert r.code == 0 and f"PASS {tmp_path / 'helper.evt'}::t" in r.out


def test_a_file_without_tests_is_one_test_that_passes_when_it_exits_0(tmp_path: Path) -> None:
    ok = write(tmp_path, 'on project start { print "hello" }\n', "plain_test.evt")
    failing = write(tmp_path, 'on project start { exit 4 }\n', "exits_test.evt")
    r = run_cli(["test", "-j", "1", str(ok), str(failing), "--report-json",
                 str(tmp_path / "r.json")])
    assert r.code == 1
    assert re.search(rf"^PASS {re.escape(str(ok))} \(\d+ ms|\d+\.\d s\)", r.out, re.M), r.out
    assert f"FAIL {failing} (" in r.out and "exit code 4" in r.out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(e["name"], e["status"]) for e in report] == [
        ("plain_test.evt", "passed"), ("exits_test.evt", "failed")]
    assert report[0]["stdout"] == "hello\n"


def test_k_selects_by_file_and_name(tmp_path: Path) -> None:
    path = write(tmp_path, 'test "alpha one" {}\ntest "beta" {}\ntest "alpha two" {}\n',
                 "k_test.evt")
    r = run_cli(["test", "-k", "alpha", str(path)])
    assert r.code == 0
    assert [n for _, n, *_ in lines_of(r.out)] == sorted(["alpha one", "alpha two"]) or \
        sorted(n for _, n, *_ in lines_of(r.out)) == ["alpha one", "alpha two"]
    r = run_cli(["test", "-k", "k_test.evt::beta", str(path)])
    assert [n for _, n, *_ in lines_of(r.out)] == ["beta"]


def test_set_overrides_a_let_in_each_file_that_has_it(tmp_path: Path) -> None:
    a = write(tmp_path, 'let who = "a"\ntest "who" { assert who == "set", who }\n', "a_test.evt")
    b = write(tmp_path, 'test "other" { assert true }\n', "b_test.evt")
    r = run_cli(["test", "--set", "who=set", str(a), str(b)])
    assert r.code == 0, r.out + r.err
    assert run_cli(["test", str(a)]).code == 1


def test_a_hanging_test_fails_at_the_timeout_and_the_others_still_run(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        on project stop { print "stopped cleanly" }
        test "hangs" { print "waiting"; wait 1h }
        test "spins" { while true { } }
        test "quick" { assert true }
    """, "hang_test.evt")
    started = time.monotonic()
    r = run_cli(["test", "-j", "3", "--timeout", "2s", str(path), "--report-junit",
                 str(tmp_path / "j.xml")], timeout=120)
    assert time.monotonic() - started >= 2  # the lower bound --timeout guarantees
    assert r.code == 1, r.out + r.err
    got = {name: word for word, name, *_ in lines_of(r.out)}
    assert got == {"hangs": "FAIL", "spins": "FAIL", "quick": "PASS"}
    assert r.out.count("timed out after 2 s") == 2
    from junitparser import Error, JUnitXml

    cases = {c.name: c for suite in JUnitXml.fromfile(str(tmp_path / "j.xml")) for c in suite}
    hang = cases["hangs"]
    assert isinstance(hang.result[0], Error)
    assert hang.result[0].message == "timed out after 2 s"
    # SIGTERM at the timeout: the program shut down as `evt run` does
    assert "waiting" in hang.system_out and "stopped cleanly" in hang.system_out


def test_an_error_in_a_handler_ends_the_test_at_once(tmp_path: Path) -> None:
    """The CI hang of the issue: without --fail-fast a runtime error left the script
    running. In a test the first error fails it and ends it (the body waits for an hour)."""
    path = write(tmp_path, """\
        server srv { listen = "127.0.0.1:0" }
        on websocket receive srv as m from p { let x = 1 / 0 }
        connection c { url = "ws://${address(srv)}/" }
        on websocket start c { send c "boom" }
        test "error elsewhere" { start srv; start c; wait 1h }
        test "unhandled websocket error" {
            stop srv
            start c
            wait 1h
        }
    """, "err_test.evt")
    r = run_cli(["test", "-j", "2", "--timeout", "5m", str(path)], timeout=240)
    assert r.code == 1
    assert "timed out" not in r.out
    block = r.out.split(f"FAIL {path}::error elsewhere", 1)[1]
    assert "division by zero" in block.split("FAIL", 1)[0] or "division by zero" in block
    assert re.search(r"FAIL .*unhandled websocket error.*\n\s+.*websocket error: c:", r.out)


def test_skip_in_a_function_the_test_calls_and_outside_a_test(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        func needs(x) { if not x { skip "needs x" } }
        on event go { needs(false) }
        test "skips through a function" { needs(false); assert false }
        test "skip from a handler is an error" { emit go; wait 100ms }
    """, "skip_test.evt")
    r = run_cli(["test", str(path)])
    got = {name: (word, extra) for word, name, *extra in lines_of(r.out)}
    assert got["skips through a function"] == ("SKIP", [None, "needs x"])
    assert got["skip from a handler is an error"][0] == "FAIL"
    assert "'skip' works only in a test's body" in r.out
    bad = write(tmp_path, 'on project start { skip "no" }\n', "bad_skip_test.evt")
    r = run_cli(["check", str(bad)])
    assert r.code == 3 and "'skip' works only in a test" in r.err


def test_a_breached_threshold_fails_the_test(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        threshold hits < 2
        test "counts" { count hits 5 }
    """, "th_test.evt")
    r = run_cli(["test", str(path)])
    assert r.code == 1
    assert re.search(r"FAIL .*::counts.*\n\s+.*threshold.*hits < 2", r.out), r.out


@pytest.mark.anyio
async def test_jobs_run_tests_at_the_same_time(tmp_path: Path) -> None:
    """-j 4 on 8 tests: a server here answers "go" only once 4 clients are connected at
    once, so only 4 tests running together can pass (with -j 2 they would time out)."""
    waiting: list[websockets.ServerConnection] = []
    arrived = anyio.Event()

    async def rendezvous(ws: websockets.ServerConnection) -> None:
        waiting.append(ws)
        if len(waiting) % 4 == 0:
            for peer in waiting[-4:]:
                await peer.send("go")
        await ws.wait_closed()
        arrived.set()

    async with websockets.serve(rendezvous, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        for i in range(8):
            write(tmp_path, f"""\
                let url = ""
                connection c {{ url = url }}
                test "meets the others {i}" {{
                    start c
                    expect c as m within 60s
                    assert m == "go"
                    wait 1s
                }}
            """, f"t{i}_test.evt")
        started = time.monotonic()
        with anyio.fail_after(180):
            proc = await anyio.run_process(
                [sys.executable, "-m", "lang", "test", "-j", "4", "--set",
                 f"url=ws://127.0.0.1:{port}/", str(tmp_path)], check=False,
                env=ENV_FOR_CLI)
        elapsed = time.monotonic() - started
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert SUMMARY.match(out.splitlines()[-1]).groups() == ("8", "0", "0")  # type: ignore[union-attr]
    assert len(waiting) == 8
    print(f"-j 4, 8 tests that each wait 1 s: {elapsed:.1f} s")


def test_reports_from_a_real_run(tmp_path: Path) -> None:
    path = write(tmp_path, MIXED, "mixed_test.evt")
    other = write(tmp_path, 'test "b" { print "<b> & \\x01 ]]>" }\n', "b_test.evt")
    r = run_cli(["test", "-j", "3", str(path), str(other),
                 "--report-junit", str(tmp_path / "r.xml"),
                 "--report-tap", str(tmp_path / "r.tap"),
                 "--report-json", str(tmp_path / "r.json")])
    assert r.code == 1
    from junitparser import Failure, JUnitXml, Skipped

    xml = JUnitXml.fromfile(str(tmp_path / "r.xml"))
    suites = list(xml)
    assert [s.name for s in suites] == [str(path), str(other)]  # the order given
    names = [c.name for c in suites[0]]
    assert names == ["echo", "sees the initial value", "sees the initial value too", "fails",
                     "later", "runtime error"]  # declaration order, whatever ended first
    cases = {c.name: c for c in suites[0]}
    assert all(c.classname == str(path) for c in suites[0])
    failure = cases["fails"].result[0]
    assert isinstance(failure, Failure)
    assert failure.message == f"{path}:25:5: assertion failed: n is 1"
    assert 'assert n == 7, "n is ${n}"' in failure.text
    assert isinstance(cases["later"].result[0], Skipped)
    assert "out of the second" in cases["sees the initial value too"].system_out
    assert "listening on" in cases["echo"].system_err
    assert "<b> & \\x01 ]]>" in next(iter(list(xml)[1])).system_out
    import xmlschema

    xsd = Path(__file__).with_name("data") / "junit.xsd"
    xmlschema.XMLSchema(str(xsd)).validate(str(tmp_path / "r.xml"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert [(e["file"], e["name"], e["status"]) for e in report][:6] == [
        (str(path), "echo", "passed"), (str(path), "sees the initial value", "passed"),
        (str(path), "sees the initial value too", "passed"), (str(path), "fails", "failed"),
        (str(path), "later", "skipped"), (str(path), "runtime error", "failed")]
    tap = (tmp_path / "r.tap").read_text().splitlines()
    assert tap[0] == "TAP version 14" and tap[1] == "1..7"
    assert tap[2] == f"ok 1 - {path}::echo"
    assert any(line.startswith(f"not ok 4 - {path}::fails") for line in tap)
    assert any(line.startswith(f"ok 5 - {path}::later # SKIP") for line in tap)


def test_virtual_time_in_evt_test(tmp_path: Path) -> None:
    path = write(tmp_path, textwrap.dedent("""\
        server quiet { listen = "127.0.0.1:0" }
        connection c { url = "ws://${address(quiet)}/" }
        let ticks = 0
        test "an hour of timers" {
            let t0 = monotonic()
            every 10m { ticks = ticks + 1 }
            wait 1h
            assert ticks >= 5 and ticks <= 6, "ticks ${ticks}"
            assert monotonic() - t0 >= 3600
        }
        test "within 60s against a silent server" {
            start quiet
            start c
            expect c as m within 60s else { print "timed out" }
        }
    """), "vt_test.evt")
    r = run_cli(["test", "--virtual-time", "--timeout", "2m", str(path)], timeout=200)
    assert r.code == 0, r.out + r.err
    assert "timed out after" not in r.out


@pytest.mark.anyio
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
async def test_a_signal_ends_the_run_and_the_tests_running(tmp_path: Path, signame: str
                                                           ) -> None:
    """SIGINT (Ctrl-C at a terminal) or SIGTERM (a cancelled CI job) to `evt test`: the
    running test's program shuts down (its connection closes with 1001, going away) and the
    run ends with 128 + the signal's number."""
    import signal

    connected = anyio.Event()
    codes: list[int | None] = []

    async def handler(ws: websockets.ServerConnection) -> None:
        connected.set()
        await ws.wait_closed()
        codes.append(ws.close_code)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        path = write(tmp_path, f"""\
            connection c {{ url = "ws://127.0.0.1:{port}/" }}
            test "waits" {{ start c; wait 1h }}
        """, "int_test.evt")
        # SIGINT by hand: the runner may have been started with it ignored (nohup)
        prefix = ["-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_"
                        "handler); sys.argv[1:] = ['test', sys.argv[-1]]; from lang.cli "
                        "import main; main()"]
        with anyio.fail_after(120):
            async with await anyio.open_process(
                    [sys.executable, *prefix, str(path)], env=ENV_FOR_CLI) as proc:
                await connected.wait()
                proc.send_signal(getattr(signal, signame))
                code = await proc.wait()
                while not codes:
                    await anyio.sleep(0.01)
    assert code == 128 + getattr(signal, signame)
    assert codes == [1001]


def test_only_the_files_own_tests_run_not_those_it_imports(tmp_path: Path) -> None:
    write(tmp_path, 'func double(x) { return x * 2 }\ntest "of the helper" { }\n', "helpers.evt")
    path = write(tmp_path, 'import "helpers.evt"\ntest "doubles" { assert double(2) == 4 }\n',
                 "uses_test.evt")
    r = run_cli(["test", str(path)])
    assert r.code == 0
    assert [n for _, n, *_ in lines_of(r.out)] == ["doubles"]
