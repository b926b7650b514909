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
from conftest import ROOT, run_cli, write

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def repl(lines: str, *args: str, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    return run_cli(["repl", *args], input=lines, cwd=cwd, timeout=30)


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
    assert r.lines == ["loaded and started", '"HI!"']
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
    assert ready.wait(10)
    yield port[0]
    loop.call_soon_threadsafe(stop[0].set_result, None)
    thread.join(10)


def test_a_connection_declared_and_started_prints_the_echo(echo_server: int) -> None:
    r = repl(f'connection c {{ url = "ws://127.0.0.1:{echo_server}/" }}\n'
             'on websocket receive c as m { print "handler got", m }\n'
             "start c\n"
             "while not connected(c) { wait 10ms }\n"
             'send c "hello"; expect c as reply within 5s; print "expect got", reply\n'
             "reply\n"  # `expect ... as` binds for the rest of its own input only
             ":conns\n"
             "stop c\n")
    assert "expect got hello" in r.lines
    assert "handler got hello" in r.lines
    assert "<repl>:6:1: error: unknown name 'reply'" in r.err
    assert any(line.startswith("c: connection, open ws://127.0.0.1:") for line in r.lines)


# ---------------------------------------------------------------- a real terminal


def spawn(tmp_path: Path) -> pexpect.spawn:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp_path / "state"),
               TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "lang", "repl"], env=env, encoding="utf-8",
                          timeout=15, dimensions=(30, 120))
    child.expect("evt>")
    return child


def finish(child: pexpect.spawn) -> None:
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
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
    finish(child)


def test_terminal_ctrl_c_cancels_a_running_wait_at_once(tmp_path: Path) -> None:
    child = spawn(tmp_path)
    child.send('print "WAITING"; wait 10s\r')
    child.expect("WAITING\r\n")  # the statement is running (and waiting) now
    started = time.monotonic()
    child.sendintr()
    child.expect("cancelled")
    child.expect("evt>")
    assert time.monotonic() - started < 3  # far less than the 10 s wait
    child.send("40 + 2\r")
    child.expect("42")
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
