"""`on input end` (SPEC §18) through the real command line: it fires once, when standard
input reaches its end, after every `on input` line has been handled."""

from __future__ import annotations

from pathlib import Path

from helpers import run_cli, write


def test_it_fires_once_after_every_line_was_handled(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let n = 0
        on input as line {
            wait 20ms                      # a handler that waits: input end still comes after
            n = n + 1
            print "line", line
        }
        on input end { print "end after", n, "lines" }
        on input end { print "second handler" }
    """)
    r = run_cli(["run", str(path)], input="a\nb\nlast")
    assert r.code == 0, r.err
    assert r.lines == ["line a", "line b", "line last", "end after 3 lines", "second handler"]


def test_empty_input_fires_it_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on input as line { print "line", line }
        on input end { print "end" }
    """)
    r = run_cli(["run", str(path)], input="")
    assert r.code == 0, r.err
    assert r.lines == ["end"]


def test_it_reads_standard_input_without_an_on_input_handler(tmp_path: Path) -> None:
    path = write(tmp_path, """
        on project start { print "start" }
        on input end { print "end" }
        on project stop { print "stop" }
    """)
    r = run_cli(["run", str(path)], input="ignored\nlines\n")
    assert r.code == 0, r.err
    assert r.lines == ["start", "end", "stop"]


def test_it_can_stop_what_keeps_the_program_alive(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let t = null
        on project start { t = every 10ms { } }
        on input end { cancel t; print "stopped the timer" }
    """)
    r = run_cli(["run", str(path)], input="x\n")
    assert r.code == 0, r.err
    assert r.lines == ["stopped the timer"]


def test_end_is_still_a_name_and_input_end_takes_no_binding(tmp_path: Path) -> None:
    path = write(tmp_path, """
        let end = "E"
        on input as end { print end }
    """)
    r = run_cli(["run", str(path)], input="a\n")
    assert r.code == 0, r.err
    assert r.lines == ["a"]
    bad = write(tmp_path, "on input end as x { print x }\n", name="bad.evt")
    r = run_cli(["check", str(bad)])
    assert r.code == 3
    assert "bad.evt:1:14: error:" in r.err and "Traceback" not in r.err
