"""The limits of the language (lang/limits.py): what a script or a peer can make evt build or
convert is bounded, and going past a bound is a runtime error or a diagnostic in evt's words,
never a freeze, a MemoryError or a traceback. Also: what the loader takes as a source file.

Every script runs as the real command line (`python -m lang`) in a subprocess: a freeze is
seen from outside (a hard timeout on the run, never a time measured), signals are real, and
the memory of a run that builds large values is bounded by RLIMIT_AS, so that the code
before a fix fails with a MemoryError instead of taking the machine's memory.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ENV_FOR_CLI, Result, write
from helpers.process import evt_process
from helpers.server import client, closed_code, recv

T = 60  # seconds: the hard limit on one run (each ends in about a second)
MEMORY = 4 * 1024 ** 3  # bytes of address space for a run that builds large values


def _limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def evt(tmp_path: Path, source: str, *, command: str = "run", memory: bool = False) -> Result:
    path = write(tmp_path, source)
    proc = subprocess.run([sys.executable, "-m", "lang", command, path.name],
                          capture_output=True, text=True, timeout=T, cwd=tmp_path,
                          env=ENV_FOR_CLI, preexec_fn=_limited_memory if memory else None)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def in_handler(body: str) -> str:
    return "on project start {\n" + body + "\n}\n"


def assert_ends(r: Result, code: int, *messages: str) -> None:
    """Exit `code`, each message in stderr, nothing of Python's own."""
    assert r.code == code, f"exit {r.code}, expected {code}\nstdout: {r.out[:2000]}\n" \
                           f"stderr: {r.err[:3000]}"
    for word in ("Traceback", "internal error", "MemoryError", 'File "', "sys.set_int"):
        assert word not in r.err, f"{word!r} in stderr:\n{r.err[-3000:]}"
    for m in messages:
        assert m in r.err, f"{m!r} not in stderr:\n{r.err[:3000]}"


# ---------------------------------------------------------------- fault 5: huge ints


HEX_10M = "f" * 10_000_000


def test_a_hex_literal_of_ten_million_digits_is_a_diagnostic(tmp_path: Path) -> None:
    """It was read in a moment, and then `k + 1` took many minutes to print, deaf to
    SIGTERM. Now the literal is refused, as a decimal one of that length is."""
    r = evt(tmp_path, in_handler(f"let k = 0x{HEX_10M}\nprint k + 1"))
    assert_ends(r, 3, "test.evt:2:9: error: a number literal of 10,000,000 digits is too "
                      "long (the most is 4300)")
    assert len(r.err) < 2000  # the literal is not shown whole


def test_hex_literals_take_as_many_digits_as_decimal_ones(tmp_path: Path) -> None:
    r = evt(tmp_path, in_handler(f"print len(hex(0x{'f' * 4300}))\nprint 0x{'9' * 3000} > 0"))
    assert_ends(r, 0)
    assert r.lines == ["4300", "true"]
    r = evt(tmp_path, in_handler(f"print 0x{'f' * 4301}"))
    assert_ends(r, 3, "a number literal of 4,301 digits is too long (the most is 4300)")


def test_int_of_a_long_hex_string_is_a_runtime_error(tmp_path: Path) -> None:
    r = evt(tmp_path, in_handler(
        f'print int("0x{"f" * 4300}") > 0\n'
        f'print int("0x{"f" * 4301}")'))
    assert_ends(r, 1, "test.evt:3:7: runtime error: int: too many digits: 4,301 (the most "
                      "is 4300)")
    assert r.lines == ["true"]
    r = evt(tmp_path, in_handler(f'print float("-0x{"f" * 5000}")'))
    assert_ends(r, 1, "runtime error: float: too many digits: 5,000 (the most is 4300)")


@pytest.mark.parametrize("show", ['print n', 'print "n is ${n}"', 'print str(n)',
                                  'print [n]', 'print {k: n}', 'print format("%d", n)'])
def test_an_int_of_more_than_4300_digits_is_not_shown(tmp_path: Path, show: str) -> None:
    """Python refuses str() past 4300 digits; evt printed such ints through Decimal, in time
    quadratic in their length (7.6 s for one of 600 KB of hex digits)."""
    r = evt(tmp_path, in_handler(f"let n = pow(10, 4300) - 1\n{show}\nn = n + 1\n{show}"))
    assert_ends(r, 1, "test.evt:5:", "4300 digits")
    assert r.out.count("9" * 4300) == 1  # the largest int of 4300 digits is shown


def test_the_error_names_hex_as_the_way_to_show_a_huge_int(tmp_path: Path) -> None:
    r = evt(tmp_path, in_handler('let n = pow(10, 5000)\nprint len(hex(n))\nprint "${n}"'))
    assert_ends(r, 1, "test.evt:4:7: runtime error: an int of more than 4300 digits is too "
                      "long to show in decimal (hex(n) shows it in base 16)")
    assert r.lines == ["4153"]


@pytest.mark.parametrize(("statement", "message"), [
    ("print xs[n]", "index (an int of more than 4300 digits) is out of range for a list"),
    ("xs[n] = 1", "index (an int of more than 4300 digits) is out of range for a list"),
    ('print "ab"[n]', "index (an int of more than 4300 digits) is out of range for a string"),
    ("print {}[n]", "no key (an int of more than 4300 digits) in this map"),
    ("exit n", "an exit code must be an int from 0 to 255, got (an int of more than 4300 "
               "digits)"),
    ("wait -n", "wait needs a non-negative duration, got (an int of more than 4300 digits)"),
])
def test_a_huge_int_in_an_error_message(tmp_path: Path, statement: str, message: str) -> None:
    """`xs[n]` with such an int was an internal error: its message put n in an f-string."""
    r = evt(tmp_path, in_handler(f"let xs = [1]\nlet n = pow(10, 5000)\n{statement}"))
    assert_ends(r, 1, "test.evt:4:", message)


def test_a_huge_port_is_a_check_error_in_words(tmp_path: Path) -> None:
    r = evt(tmp_path, f'connection c {{ url = "ws://127.0.0.1/"; port = 0x{"f" * 4300} }}\n'
                      "on project start { start c }\n")
    assert_ends(r, 3, "'port' must be between 1 and 65535, got (an int of more than 4300 "
                      "digits)")


def test_squaring_again_and_again_is_a_runtime_error(tmp_path: Path) -> None:
    """Each squaring doubles the length: the 28th squaring of 3 ran for over ten minutes in
    one C call, deaf to SIGTERM. Now '*' refuses a product of more than 10,000 digits (the
    limit of pow) before computing it."""
    r = evt(tmp_path, in_handler("let x = 3\nlet n = 0\n"
                                 "while true { x = x * x; n = n + 1 }"))
    assert_ends(r, 1, "test.evt:4:20: runtime error: the result of '*' is too large: an int "
                      "of more than 10,000 digits")
    r = evt(tmp_path, in_handler("let a = pow(10, 5000)\n"
                                 "print len(hex(a * (a - 1))), len(hex(a * 1000 * 1000))\n"
                                 "print len(hex(a * a))"))
    assert_ends(r, 1, "test.evt:4:17: runtime error: the result of '*' is too large")
    assert r.lines == ["8305 4158"]


STOPPABLE = """
every 1h { }
on project start {
    print "ready"
    let n = int("0x" + repeat("f", 10000000))
    print "${n + 1}"
}
"""


@pytest.mark.anyio
async def test_a_script_computing_a_huge_int_stops_on_sigterm(tmp_path: Path) -> None:
    """10M hex digits made into an int and printed ignored SIGTERM for many minutes (one C
    call). Now int() refuses them at once: the error is reported, the timer keeps the
    program alive, and SIGTERM ends it as usual."""
    async with evt_process(tmp_path, STOPPABLE) as child:
        await child.out.wait_for("^ready$", timeout=T)
        await child.err.wait_for("runtime error: int: too many digits", timeout=T)
        child.proc.send_signal(signal.SIGTERM)
        code = await child.exited(timeout=T)
    assert code == 143, child.err.text[-3000:]
    child.assert_clean_stderr()


FREEZER = """
server srv {
    listen = "127.0.0.1:0"
    max_message = 8MiB
}
on project start { start srv }
on websocket receive srv as msg from p {
    if len(msg) > 1000 {
        print "big number from", p.id
        send p "${int(msg) + 1}"
    } else {
        send p msg
    }
}
"""


@pytest.mark.anyio
async def test_a_huge_number_from_one_client_does_not_freeze_the_others(tmp_path: Path) -> None:
    """One 600 KB hex number sent to `"${int(msg) + 1}"` froze every client for 7.6 s (the
    time grows with the square of the length: 3 MB here would be minutes). Now that handler
    gets a runtime error at once and the other client's echo comes back."""
    async with evt_process(tmp_path, FREEZER) as child:
        url = await child.url("srv")
        async with client(url, max_size=None) as first, client(url) as second:
            await first.send("0x" + "f" * 3_000_000)
            await child.out.wait_for("^big number from 1$", timeout=T)
            await second.send("still there?")
            assert await recv(second, timeout=T) == "still there?"
            await child.err.wait_for(r"serve\.evt:10:19: runtime error: int: too many digits: "
                                     r"3,000,000 \(the most is 4300\)", timeout=T)
            await first.send("and you?")
            assert await recv(first, timeout=T) == "and you?"
        child.proc.send_signal(signal.SIGTERM)
        assert await child.exited(timeout=T) == 143
    child.assert_clean_stderr()


# ---------------------------------------------------------------- fault 9: sizes of '+'


@pytest.mark.parametrize(("start", "double", "unit"), [
    ('"ab"', "s = s + s", "characters"),
    ("b\"ab\"", "s = s + s", "bytes"),
    ("[1, 2]", "s = s + s", "items"),
    ('"ab"', 's = "${s}${s}"', "characters"),
])
def test_doubling_forty_times_is_a_runtime_error(tmp_path: Path, start: str, double: str,
                                                 unit: str) -> None:
    """It was a MemoryError labelled "internal error ... a bug in evt" (here the memory is
    limited to 4 GiB; without a limit it took the machine's memory first). repeat, join and
    format already refused results over 100 Mi."""
    r = evt(tmp_path, in_handler(f"let s = {start}\nfor i in range(40) {{ {double} }}"),
            memory=True)
    what = "the string is too large" if "${" in double else "the result of '+' is too large"
    assert_ends(r, 1, f"{what}: 134,217,728 {unit} (the most is 104,857,600)")
    assert re.search(r"test\.evt:3:\d+: runtime error: ", r.err), r.err


def test_adding_up_to_the_limit_works(tmp_path: Path) -> None:
    r = evt(tmp_path, in_handler(
        'let s = repeat("x", 52428800)\nprint len(s + s)\nprint len(s + s + "y")'), memory=True)
    assert_ends(r, 1, "test.evt:4:17: runtime error: the result of '+' is too large: "
                      "104,857,601 characters (the most is 104,857,600)")
    assert r.lines == ["104857600"]


def test_json_of_many_copies_of_a_big_string_is_a_runtime_error(tmp_path: Path) -> None:
    """A list of 1024 copies of one 50 MB string (10 doublings, each within the limit) made
    json_stringify (and send) build 51 GB: a MemoryError ("json_stringify: " and nothing
    more) under a memory limit, the machine's memory without one."""
    r = evt(tmp_path, in_handler('let xs = [repeat("a", 50000000)]\n'
                                 "for i in range(10) { xs = xs + xs }\n"
                                 "print len(xs)\nprint len(json_stringify(xs))"), memory=True)
    assert_ends(r, 1, "test.evt:5:11: runtime error: json_stringify: cannot convert to JSON: "
                      "the text would be more than 104,857,600 characters")
    assert r.lines == ["1024"]
    r = evt(tmp_path, in_handler('let m = {}\nm[repeat("k", 60000000)] = repeat("v", 60000000)'
                                 "\nprint len(json_stringify(m))"), memory=True)
    assert_ends(r, 1, "the text would be more than 104,857,600 characters")


# ---------------------------------------------------------------- float overflow


@pytest.mark.parametrize(("expr", "op"), [
    ("1e308 * 10", "*"), ("1e308 + 1e308", "+"), ("-1e308 - 1e308", "-"), ("1e308 / 0.1", "/"),
    ("x * 10", "*"), ("10 * x", "*"), ("x + pow(10, 308)", "+"),
])
def test_float_overflow_is_a_runtime_error(tmp_path: Path, expr: str, op: str) -> None:
    """As pow(10.0, 400) is: the result was inf, silently."""
    r = evt(tmp_path, in_handler(f"let x = 1e308\nprint {expr}"))
    assert_ends(r, 1, f"runtime error: the result of '{op}' is too large for a float")
    assert re.search(r"test\.evt:3:\d+: runtime error", r.err), r.err


def test_inf_in_gives_inf_out(tmp_path: Path) -> None:
    """Only an overflow is an error: arithmetic on inf goes on as in every language."""
    r = evt(tmp_path, in_handler('let inf = float("inf")\nprint inf * 2, inf + 1, -inf - 1, '
                                 'inf / 2, inf - inf, 1e307 * 2 / 4'))
    assert_ends(r, 0)
    assert r.lines == ["inf inf -inf inf nan 5e+306"]


# ---------------------------------------------------------------- fault 10: source files


# first in the environment, so that a diagnostic showing the start of /proc/self/environ
# would show it
ENV_WITH_SECRET = {"EVT_TEST_SECRET": "do-not-print-me", **ENV_FOR_CLI}


def cli(tmp_path: Path, *args: str) -> Result:
    """`python -m lang ARGS` with its memory bounded, so that reading /dev/zero to the end
    is a quick MemoryError, not the machine's memory."""
    proc = subprocess.run([sys.executable, "-m", "lang", *args], capture_output=True,
                          text=True, timeout=T, cwd=tmp_path, env=ENV_WITH_SECRET,
                          stdin=subprocess.DEVNULL, preexec_fn=_limited_memory)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_refused(r: Result, code: int, message: str) -> None:
    assert r.code == code, f"exit {r.code}, expected {code}\nstdout: {r.out[:2000]}\n" \
                           f"stderr: {r.err[:3000]}"
    for word in ("Traceback", "MemoryError", "KeyboardInterrupt", 'File "'):
        assert word not in r.err, f"{word!r} in stderr:\n{r.err[-3000:]}"
    assert message in r.err, r.err[:3000]


NOT_SOURCES = {  # files named *.evt that are not source files: what the error says
    "env.evt": "is not a source file: it is a file of the kernel (/proc or /sys), not a "
               "script",
    "zero.evt": "is not a source file: it is a character device",
    "fifo.evt": "is not a source file: it is a named pipe (FIFO)",
    "dir.evt": "is not a source file: it is a directory",
    "nul.evt": "is not a source file: it holds a NUL byte (at offset 27)",
    "latin1.evt": "is not a source file: it is not UTF-8 text (bad byte at offset 29)",
    "huge.evt": "is not a source file: it is 104,857,601 bytes long (the most is "
                "104,857,600)",
}


def _sources(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "env.evt").symlink_to("/proc/self/environ")
    (tmp_path / "zero.evt").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.evt")
    (tmp_path / "dir.evt").mkdir()
    (tmp_path / "nul.evt").write_bytes(b'on project start { print "a\0b" }\n')
    (tmp_path / "latin1.evt").write_bytes(b'on project start { print "caf\xe9" }\n')
    with open(tmp_path / "huge.evt", "wb") as f:  # sparse: no disk is used
        f.truncate(100 * 1024 * 1024 + 1)
    return NOT_SOURCES


@pytest.mark.parametrize("name", list(NOT_SOURCES))
@pytest.mark.parametrize("command", ["run", "check"])
def test_run_and_check_take_only_source_files(tmp_path: Path, command: str, name: str) -> None:
    """/dev/zero was read until a MemoryError traceback, a FIFO hung for ever, and a link
    to /proc/self/environ printed the environment in a syntax error."""
    message = _sources(tmp_path)[name]
    r = cli(tmp_path, command, name)
    assert_refused(r, 2, f"evt: error: '{name}' {message}")
    assert "do-not-print-me" not in r.err


def test_imports_take_only_source_files(tmp_path: Path) -> None:
    expected = _sources(tmp_path)
    lines = [f'import "{name}"' for name in expected]
    write(tmp_path, "\n".join([*lines, 'on project start { print "main" }', ""]), "main.evt")
    r = cli(tmp_path, "run", "main.evt")
    for line, (name, message) in enumerate(expected.items(), start=1):
        assert_refused(r, 3, f"main.evt:{line}:8: error: '{name}' {message}")
    assert f"{len(expected)} errors in main.evt" in r.err
    assert "do-not-print-me" not in r.err and r.out == ""


def test_a_link_to_a_source_file_is_followed(tmp_path: Path) -> None:
    """Links are fine where they lead to a script (a checkout that links its libraries)."""
    (tmp_path / "real").mkdir()
    write(tmp_path / "real", 'func hello() { print "hello from lib" }\n', "lib.evt")
    (tmp_path / "lib.evt").symlink_to(tmp_path / "real" / "lib.evt")
    write(tmp_path, 'import "lib.evt"\non project start { hello() }\n', "main.evt")
    (tmp_path / "link.evt").symlink_to(tmp_path / "main.evt")
    r = cli(tmp_path, "run", "link.evt")
    assert (r.code, r.out, r.err) == (0, "hello from lib\n", "")


def test_an_empty_file_is_a_script_that_does_nothing(tmp_path: Path) -> None:
    write(tmp_path, "", "empty.evt")
    r = cli(tmp_path, "run", "empty.evt")
    assert (r.code, r.out, r.err) == (0, "", "")


# ---------------------------------------------------------------- diagnostics (user trial)


def diagnostics(tmp_path: Path, source: str) -> str:
    """What `evt check` says of a script (exit 3 expected)."""
    r = evt(tmp_path, source, command="check")
    assert r.code == 3, (r.code, r.err)
    return r.err


CONNECTION = 'connection echo { url = "ws://127.0.0.1:1/" }\n'


@pytest.mark.parametrize(("statement", "word", "keyword"), [
    ("strat echo", "strat", "start"),
    ('sned echo "hi"', "sned", "send"),
    ("stpo echo", "stpo", "stop"),
    ("expcet echo as r", "expcet", "expect"),
    ('pirnt "x"', "pirnt", "print"),
    ("retrun 1", "retrun", "return"),
    ("whiel true { }", "whiel", "while"),
    ("wiat 1s", "wiat", "wait"),
    ("chnage scene x", "chnage", "change"),
    ('echo "hi"', "echo", "print"),
    ("var x = 1", "var", "let"),
    ("let y = 0; stpo echo", "stpo", "stop"),
])
def test_a_misspelt_statement_keyword_is_named(tmp_path: Path, statement: str, word: str,
                                               keyword: str) -> None:
    """`strat echo` said "did you mean 'print'?" with the caret on 'echo' (the name of the
    connection, which looks like the shell's echo)."""
    err = diagnostics(tmp_path, CONNECTION + "on project start {\n    " + statement + "\n}\n")
    col = 5 + statement.index(word)
    lines = err.splitlines()
    assert lines[0] == f"test.evt:3:{col}: error: unknown statement '{word}'; did you mean " \
                       f"'{keyword}'?", err
    assert lines[2] == " " * (col + 3) + "^", err  # under the first letter of the word


@pytest.mark.parametrize(("word", "keyword"), [("brake", "break"), ("contnue", "continue"),
                                               ("retrn", "return"), ("exti", "exit")])
def test_a_misspelt_one_word_statement_is_named(tmp_path: Path, word: str, keyword: str
                                                ) -> None:
    """A lone word parses as an expression: the checker said "unknown name" and "this
    expression's value is not used"."""
    err = diagnostics(tmp_path, f"on project start {{\n    while true {{ {word} }}\n}}\n")
    assert err.splitlines()[0] == f"test.evt:2:18: error: unknown statement '{word}'; did " \
                                  f"you mean '{keyword}'?", err
    assert "1 error in" in err


def test_names_that_are_not_near_a_keyword_get_the_parser_s_words(tmp_path: Path) -> None:
    err = diagnostics(tmp_path, CONNECTION + "on project start {\n    x = strat echo\n}\n")
    assert err.splitlines()[0] == "test.evt:3:15: error: expected '}' or the end of the " \
                                  "line, found the name 'echo'", err  # no 'print' for echo
    err = diagnostics(tmp_path, "on project start {\n    foo bar\n}\n")
    assert err.splitlines()[0] == "test.evt:2:9: error: expected '=', '}' or the end of the " \
                                  "line, found the name 'bar'", err


def test_certfile_on_a_connection_is_a_key_not_a_misspelt_ca_file(tmp_path: Path) -> None:
    """It said "did you mean 'ca_file'?": a key with another meaning. Since SPEC §15's client
    certificates it is a key of its own (tests/endpoints/test_client_certs.py)."""
    r = evt(tmp_path, 'connection c {\n    url = "wss://127.0.0.1:1/"\n'
                      '    certfile = "c.pem"\n    keyfile = "k.pem"\n}\n', command="check")
    assert (r.code, r.err) == (0, "")


TYPES = """
connection c { url = "ws://127.0.0.1:1/" }
server srv { listen = "127.0.0.1:0" }
on project start { start srv }
on websocket start srv from p {
    let t = after 1h { }
    let names = [type(null), type(true), type(1), type(1.5), type("s"), type(b"x"),
                 type([]), type({}), type(p), type(t), type(c), type(srv)]
    print "types:", join(names, " ")
    cancel t
    exit
}
"""


@pytest.mark.anyio
async def test_the_reference_names_every_type_that_type_gives(tmp_path: Path) -> None:
    """docs/reference.md's row for type() left out `connection` and `server`."""
    async with evt_process(tmp_path, TYPES) as child:
        async with client(await child.url("srv")) as ws:
            found = await child.out.wait_for("^types: (.*)$", timeout=T)
            assert (await closed_code(ws, timeout=T))[0] == 1001  # exit's going away
        assert await child.exited(timeout=T) == 0
    given = found[0][1].split()
    reference = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    row = re.search(r"^\| `type\(v\)` \| The name of the value's type: ([a-z ]+)\. \|$",
                    reference, re.M)
    assert row is not None
    assert row[1].split() == given
    table = re.findall(r"^\| [a-z]+ \| `([a-z]+)` \|", reference, re.M)  # §2's table
    assert table == given
