"""The REPL: piped sessions (stdin not a terminal) and real pseudo-terminal sessions."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from helpers import ROOT, run_cli, write

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
T = 30  # seconds: the hard limit on a session, and on one wait for a terminal's output


def repl(lines: str, *args: str, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    return run_cli(["repl", *args], input=lines, cwd=cwd, timeout=T)


# ---------------------------------------------------------------- piped


def test_expression_values_are_echoed_in_literal_form() -> None:
    r = repl('1 + 2\n"a" + "b"\n[1, "x", {k: 2.5}]\nnull\n7 / 2\nb"\\x01ok"\n')
    assert r.code == 0, r.err
    assert r.lines == ["3", '"ab"', '[1, "x", {"k": 2.5}]', "3.5", 'b"\\x01ok"']
    assert r.err == ""  # no banner, no prompt when stdin is not a terminal


def test_let_then_use_and_a_multi_line_func() -> None:
    r = repl("let x = [1, 2]\npush(x, 3)\nfunc double(n) {\n  return n * 2\n}\n"
             "double(len(x))\nprint \"x is\", x\n")
    assert r.code == 0, r.err
    assert r.lines == ["[1, 2, 3]", "6", "x is [1, 2, 3]"]


def test_a_trailing_operator_or_open_bracket_continues_the_input() -> None:
    r = repl("let total = 1 +\n  2 +\n  3\ntotal\nlet xs = [\n  1,\n  2,\n]\nxs\n")
    assert r.code == 0, r.err
    assert r.lines == ["6", "[1, 2]"]


def test_a_syntax_error_then_a_working_line() -> None:
    r = repl("let z = )\nprint \"still here\"\n1 +* 2\n40 + 2\n")
    assert r.lines == ["still here", "42"]
    assert "<repl>:1:9: error: expected an expression" in r.err
    assert "    let z = )\n            ^" in r.err
    assert "<repl>:3:4: error:" in r.err
    assert "Traceback" not in r.err


def test_a_runtime_error_names_the_repl_input_and_the_session_goes_on() -> None:
    r = repl('let n = 1\nprint "n=" + n\nprint "after"\n')
    assert r.lines == ["after"]
    assert "<repl>:2:12: runtime error: cannot add string and int" in r.err
    assert "in repl input" in r.err


def test_a_declaration_that_replaces_another_says_so() -> None:
    r = repl("func f() { return 1 }\nf()\nfunc f() { return 2 }\nf()\n"
             "on event e { print \"first\" }\non event e { print \"second\" }\nemit e\n")
    assert r.lines == ["1", "2", "second"]
    assert "note: func f redefined" in r.err
    assert "note: replaced the handler for 'on event e'" in r.err


def test_vars_conns_and_quit() -> None:
    r = repl("let a = 1\nlet b = \"two\"\nserver srv { listen = \"127.0.0.1:0\" }\n"
             "connection c { url = \"ws://127.0.0.1:9/\" }\n:vars\n:conns\n:quit\n"
             "print \"not reached\"\n")
    assert r.code == 0, r.err
    assert "a = 1" in r.lines and 'b = "two"' in r.lines and "args = []" in r.lines
    assert "srv: server, not listening, 0 peers" in r.lines
    assert "c: connection, idle" in r.lines
    assert "not reached" not in r.out


def test_help_lists_commands_and_builtins() -> None:
    r = repl(":help\n:nonsense\n")
    assert ":load FILE" in r.out and "json_parse" in r.out
    assert "unknown command :nonsense" in r.err


def test_load_runs_a_script_into_the_session(tmp_path: Path) -> None:
    write(tmp_path, """
        let greeting = "hi"
        func shout(s) { return upper(s) + "!" }
        on project start { print "loaded and started" }
    """, "lib.evt")
    r = repl(":load lib.evt\nshout(greeting)\n:load missing.evt\n", cwd=tmp_path)
    assert r.lines == ["loaded and started", '"HI!"'], (r.code, r.err)
    assert "cannot read 'missing.evt'" in r.err


def test_repl_file_argument_loads_it(tmp_path: Path) -> None:
    write(tmp_path, "let n = 41\non project start { n = n + 1 }\n", "start.evt")
    r = repl("n\n", "start.evt", cwd=tmp_path)
    assert r.lines == ["42"]


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A `websockets` echo server on a thread of its own; yields its port."""
    from websockets.asyncio.server import serve

    ready = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Future[None]] = []

    async def handler(ws):  # type: ignore[no-untyped-def]
        async for m in ws:
            await ws.send(m)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port.append(server.sockets[0].getsockname()[1])
            stop.append(asyncio.get_running_loop().create_future())
            ready.set()
            await stop[0]

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(T)
    yield port[0]
    loop.call_soon_threadsafe(stop[0].set_result, None)
    thread.join(T)


def test_a_connection_declared_and_started_prints_the_echo(echo_server: int) -> None:
    r = repl(f'connection c {{ url = "ws://127.0.0.1:{echo_server}/" }}\n'
             'on websocket receive c as m { print "handler got", m }\n'
             "start c\n"
             "while not connected(c) { wait 10ms }\n"
             'send c "hello"; expect c as reply within 20s; print "expect got", reply\n'
             "reply\n"  # at the prompt `expect ... as` binds a session variable
             ":conns\n"
             "stop c\n")
    assert "expect got hello" in r.lines
    assert "handler got hello" in r.lines
    assert '"hello"' in r.lines and r.err == ""
    assert any(line.startswith("c: connection, open ws://127.0.0.1:") for line in r.lines)


def test_metrics_prints_the_summary_so_far(echo_server: int) -> None:
    r = repl(f'connection c {{ url = "ws://127.0.0.1:{echo_server}/" }}\n'
             "start c\n"
             "while not connected(c) { wait 10ms }\n"
             'send c "hello"; expect c as reply within 20s\n'
             "count typed 2\n"
             ":metrics\n"
             "stop c\n")
    assert r.err == "", r.err
    assert r.lines[0].startswith("metrics (")
    rows = {line.split()[0]: line.split()[1:] for line in r.lines[1:] if line.startswith("  ")}
    assert rows["ws_msgs_sent"][:2] == ["c", "count=1"]
    assert rows["ws_msgs_received"][:2] == ["c", "count=1"]
    assert rows["ws_expect_duration"][:2] == ["c", "count=1"]
    assert rows["typed"][0] == "count=2"


# ---------------------------------------------------------------- a real terminal


def spawn(tmp_path: Path) -> pexpect.spawn:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp_path / "state"),
               TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "lang", "repl"], env=env, encoding="utf-8",
                          timeout=T, dimensions=(30, 120))
    child.expect("evt>")
    return child


def finish(child: pexpect.spawn) -> None:
    """Ctrl-D at the prompt (the caller has seen it drawn: only then is the terminal raw, and
    a Ctrl-D typed before, in cooked mode, is the terminal's end of file, not a key), then
    wait for the exit: the terminal closes before the process has ended its shutdown, and
    `close()` on a live child would kill it."""
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    deadline = time.monotonic() + T
    while child.isalive():  # bounded polling: pexpect has no wait with a limit
        assert time.monotonic() < deadline, "the REPL did not exit after Ctrl-D"
        time.sleep(0.05)
    child.close()
    assert child.exitstatus == 0


def test_terminal_prompt_and_tab_completion_of_a_builtin(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.send("json_str")
    child.send("\t")
    child.expect(r"json_stringify(\x1b\[[0-9;]*m)*\(")
    child.send("[1, 2])\r")
    child.expect(r'"\[1,2\]"')
    child.expect("evt>")
    finish(child)
    history = (tmp_path / "state" / "evt" / "repl_history").read_text()
    assert "json_stringify([1, 2])" in history


def test_terminal_event_output_leaves_the_typed_text_intact(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.send('every 100ms { print "TICK" }\r')
    child.expect("evt>")
    child.send("let half = 12")  # half typed, no Enter
    child.expect("TICK")  # printed above the prompt while the line is being typed
    child.expect("TICK")
    child.send("3\r")
    child.expect("evt>")
    child.send("half + 1\r")  # 124 only if the line was kept whole: "let half = 123"
    child.expect("124")
    child.expect("evt>")
    finish(child)


def test_terminal_ctrl_c_cancels_a_running_wait_at_once(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    # a wait far longer than pexpect's limit on each expect: it must be cut short
    child.send(f'print "WAITING"; wait {10 * T}s\r')
    child.expect("WAITING\r\n")  # the statement is running (and waiting) now
    child.sendintr()
    child.expect("cancelled")
    child.expect("evt>")
    child.send("40 + 2\r")
    child.expect("42")
    child.expect("evt>")
    finish(child)


def test_terminal_ctrl_c_at_the_prompt_drops_the_line_not_the_session(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.send("func f() {")
    child.send("\r")
    child.expect(r"\.\.\.")  # the continuation prompt
    child.sendintr()
    child.expect("evt>")
    child.send("40 + 2\r")
    child.expect("42")
    child.expect("evt>")
    finish(child)


def test_the_evt_lexer_is_a_pygments_plugin() -> None:
    """`pygmentize -l evt` works: the lexer is found through the installed entry point."""
    from pygments.lexers import get_lexer_by_name
    from pygments.token import Keyword, Number, String

    lexer = get_lexer_by_name("evt")
    assert type(lexer).__name__ == "EvtLexer"
    tokens = list(lexer.get_tokens('on project start { print "n=${1 + 2}", 250ms }'))
    assert (Keyword, "on") in tokens and (Keyword, "print") in tokens
    assert (String.Interpol, "${") in tokens and (Number, "250ms") in tokens


# ---------------------------------------------------------------- review fixes


def test_a_rejected_declaration_leaves_no_name_behind(tmp_path: Path) -> None:
    """A declaration the checker refuses declares nothing: a later use is a check error,
    not a Python traceback, and a refused redefinition keeps the function's old arity."""
    write(tmp_path, "let u = unknown_name\n", "bad.evt")
    r = repl("let q = nope\nq = 2\nq\nfunc h() { return 1 }\nfunc h(a) { return zz }\n"
             "h()\n:load bad.evt\nu\nprint \"alive\"\n", cwd=tmp_path)
    assert "Traceback" not in r.err
    assert r.lines == ["1", "alive"]
    assert "<repl>:2:1: error: 'q' is not declared" in r.err
    assert "<repl>:3:1: error: unknown name 'q'" in r.err
    assert "<repl>:8:1: error: unknown name 'u'" in r.err


def test_a_failed_assert_at_the_prompt_does_not_end_the_session() -> None:
    r = repl('assert 1 == 2, "msg"\nprint "alive"\n')
    assert "<repl>:1:1: assertion failed: msg" in r.err
    assert r.lines == ["alive"]
    assert r.code == 1  # the session had an error


def test_redefining_the_current_scene_takes_effect_when_it_is_next_entered() -> None:
    r = repl('scene s { let v = 1\n on event e { print "old", v } }\nchange scene s\n'
             'scene s { let a = 10\n let b = 20\n on event e { print "new", a, b } }\n'
             "emit e\n:vars\nchange scene s\nemit e\n:vars\n")
    assert "Traceback" not in r.err and "internal error" not in r.err
    assert "note: scene s redefined (used when it is next entered)" in r.err
    assert r.lines == ["old 1", "args = []", "scene s:", "  v = 1",
                       "new 10 20", "args = []", "scene s:", "  a = 10", "  b = 20"]


def test_a_connection_or_server_redeclared_in_the_other_role_stops_the_old_one() -> None:
    r = repl('server srv { listen = "127.0.0.1:0" }\nstart srv\n'
             'connection c { url = "ws://${address(srv)}/" }\nstart c\n'
             "while not connected(c) { wait 10ms }\n"
             "while len(peers(srv)) == 0 { wait 10ms }\n"
             'server c { listen = "127.0.0.1:0" }\n'
             "while len(peers(srv)) > 0 { wait 10ms }\n"  # the old connection closed
             'print "old connection gone"\n'
             'connection k { url = "ws://${address(srv)}/" }\nstart k\n'
             "while not connected(k) { wait 10ms }\n"
             'connection srv { url = "ws://127.0.0.1:9/" }\n'
             "while connected(k) { wait 10ms }\n"  # the old server closed its peers
             'print "old server gone"\n:conns\n')
    assert "Traceback" not in r.err
    assert "note: connection c stopped and replaced by a server" in r.err
    assert "note: server srv stopped and replaced by a connection" in r.err
    assert "old connection gone" in r.lines and "old server gone" in r.lines
    assert "srv: connection, idle ws://127.0.0.1:9/" in r.lines or \
        "srv: connection, idle" in r.lines


def test_sigterm_runs_the_shutdown() -> None:
    import signal
    import subprocess

    from helpers import ENV_FOR_CLI

    proc = subprocess.Popen([sys.executable, "-m", "lang", "repl"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(ENV_FOR_CLI))
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write('on project stop { print "stopping" }\nprint "ready"\n')
        proc.stdin.flush()
        assert proc.stdout.readline() == "ready\n"  # the session is running
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopping" in out, err
    assert proc.returncode == 143


def test_a_line_that_is_not_utf8_is_an_error_not_a_broken_string() -> None:
    import subprocess

    from helpers import ENV_FOR_CLI

    proc = subprocess.run([sys.executable, "-m", "lang", "repl"],
                          input=b'"a\xffb"\nlet s = [\n"\xfe",\n]\n"ok"\n',
                          capture_output=True, env=dict(ENV_FOR_CLI), timeout=30)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert out.splitlines() == ['"ok"']
    assert "<repl>:1:3: error: this line is not UTF-8 text" in err
    assert "<repl>:3:2: error: this line is not UTF-8 text" in err
    assert "Traceback" not in err
    assert proc.returncode == 1


def test_every_line_of_input_counts_in_diagnostics() -> None:
    """Blank lines, comments and commands have line numbers too: <repl>:LINE is the line
    of the input (of the piped file)."""
    r = repl("1\n\n:vars\n# a comment\nfoo\n:nope\n")
    assert "<repl>:5:1: error: unknown name 'foo'" in r.err
    assert "<repl>:6:1: error: unknown command :nope; :help lists the commands" in r.err


def test_the_exit_code_says_whether_the_session_had_an_error() -> None:
    assert repl('print "fine"\n').code == 0
    assert repl("let z = )\n").code == 1  # a syntax error
    assert repl("nope\n").code == 1  # a check error
    assert repl("print 1 / 0\n").code == 1  # a runtime error
    assert repl(":nonsense\n").code == 1
    assert repl("exit 3\n").code == 3


def test_the_lexer_keeps_a_map_literal_inside_an_interpolation_in_the_interpolation() -> None:
    from pygments.lexers import get_lexer_by_name
    from pygments.token import Name, Punctuation, String

    tokens = list(get_lexer_by_name("evt").get_tokens('print "a ${ {k: 1}.k } b"'))
    assert (Punctuation, "}") in tokens and (Name, "k") in tokens
    assert (String.Interpol, "}") in tokens
    assert (String.Double, " b") in tokens  # the string goes on after the interpolation
    assert (String.Double, ".k } b") not in tokens


def test_an_else_on_the_line_after_the_brace_is_refused_whole() -> None:
    """At the prompt an input runs when it is complete, so an `else` on the next line
    cannot join its `if`: the error names it, and its block does not run line by line."""
    r = repl('if false {\n  print 1\n}\nelse {\n  print "else ran"\n}\n'
             'if false { print 1 }\nelse if true {\n  print "else if ran"\n}\n'
             'if false { print 1 } else { print "same line" }\n')
    assert r.lines == ["same line"]
    assert "<repl>:4:1: error:" in r.err and "<repl>:8:1: error:" in r.err
    assert "at the prompt 'else' goes on the line of the '}'" in r.err
    assert "no matching opening bracket" not in r.err


def test_a_function_redefined_with_another_arity_fails_its_old_call_sites_clearly() -> None:
    """A handler compiled against `f(a)` called the new `f(a, b)` with b null: the error
    came from inside f ("cannot add int and null"), far from the cause."""
    r = repl("func f(a) { return a }\non event e { print f(1) }\n"
             "func f(a, b) { return a + b }\nemit e\nprint f(1, 2)\n")
    assert r.lines == ["3"]
    assert "<repl>:2:20: runtime error: f() takes 2 arguments, got 1 (it was redefined)" \
        in r.err
    assert "null" not in r.err


def test_expect_at_the_prompt_binds_a_session_variable() -> None:
    """Found in a user trial: `expect c as r` at the prompt bound r for that input only, so
    the next line could not use it; at the prompt it binds a session variable, as `let`."""
    r = repl('server s { listen = "127.0.0.1:0" }\n'
             'connection c { url = "ws://${address(s)}/" }\n'
             "on websocket receive s as m from p { send p upper(m) }\n"
             "start s\nstart c\nwhile not connected(c) { wait 10ms }\n"
             # one input: a reply that came before a later input began is not seen
             'send c "ping"; expect c as reply within 20s\nreply\n'
             'print "again", reply + "!"\n'
             'expect c as reply within 10ms else { print "none" }\nprint reply\n')
    assert "Traceback" not in r.err and "error" not in r.err, r.err
    assert r.lines == ['"PING"', "again PING!", "none", "null"]
