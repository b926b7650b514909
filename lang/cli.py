"""The `evt` command: run, check, repl.

Rules of this module:
- This and the REPL are the only places that print diagnostics and choose exit codes:
  0 success, 1 script failure, 2 usage error or unreadable file, 3 syntax or check errors,
  130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP (SPEC §10).
- `evt check` imports only the parser, the checker and the stdlib's signatures, so it starts
  fast; the event loop and the network stack are imported for `run` and `repl`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any, NoReturn

from lang import api
from lang import ast as A


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evt", description="Run event scripts for WebSocket work.",
        epilog="Exit codes: 0 success, 1 script failure, 2 usage error, 3 syntax or check "
               "errors, 130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP).")
    p.add_argument("--version", action="version", version=f"evt {api.VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a script",
                         description="Run FILE; what follows FILE is the script's `args`.")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                     help="override a top-level `let` (VALUE is read as an evt literal when it "
                          "is one, else as a string)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="print the connection lifecycle to stderr")
    run.add_argument("--trace", action="store_true", help="print every frame sent and received")
    run.add_argument("--fail-fast", action="store_true",
                     help="end the program (exit 1) at the first runtime error or unhandled "
                          "websocket error, as a failed assert does")
    run.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default=api.default_loop(),
                     help="event loop (default: $EVT_LOOP, else uvloop where installed)")
    run.add_argument("--virtual-time", action="store_true",
                     help="timers, waits and timeouts follow a virtual clock that jumps to the "
                          "next deadline whenever the program is idle (runs on asyncio)")
    run.add_argument("--record", metavar="FILE.har",
                     help="record every WebSocket conversation of the run into a HAR file")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="run N processes of the script; servers share their port "
                          "(SO_REUSEPORT), `worker()` tells each its index")
    metrics = run.add_argument_group("metrics (SPEC §12)")
    metrics.add_argument("--summary", action="store_true",
                         help="print every metric and threshold to stderr at the end")
    metrics.add_argument("--threshold", dest="thresholds", action="append", default=[],
                         metavar="EXPR", help="add a threshold, as `threshold EXPR` would "
                                              "(e.g. 'ws_expect_duration.p95 < 200ms')")
    metrics.add_argument("--metrics-out", metavar="FILE",
                         help="write a JSON line with every metric each second, and at the end")
    metrics.add_argument("--metrics-listen", metavar="HOST:PORT",
                         help="serve the metrics in the Prometheus format on "
                              "http://HOST:PORT/metrics")
    metrics.add_argument("--report-html", metavar="FILE",
                         help="write a self-contained HTML report at the end")
    metrics.add_argument("-q", "--quiet", action="store_true",
                         help="no live progress line on a terminal")
    metrics.add_argument("--no-metrics", action="store_true",
                         help="measure nothing (thresholds, --summary and metric() then have "
                              "nothing to read)")
    run.add_argument("file", metavar="FILE")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    test = sub.add_parser(
        "test", help="run test files (SPEC §13)",
        description="Run each `test` of each file in a fresh program; a directory is searched "
                    "for *_test.evt and test_*.evt.",
        epilog="Exit codes: 0 no test failed, 1 a test failed, 2 usage error, 3 a test file "
               "has syntax or check errors.")
    test.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                      help="tests run in N parallel processes (default: the number of CPUs)")
    test.add_argument("-k", dest="keyword", metavar="TEXT",
                      help="only the tests whose FILE::NAME contains TEXT")
    test.add_argument("--timeout", default="60s", metavar="D",
                      help="a test still running after D (e.g. 30s, 2m) fails (default 60s)")
    test.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                      help="override a top-level `let` in every file that has it")
    test.add_argument("--virtual-time", action="store_true",
                      help="timers, waits and timeouts follow a virtual clock (see `evt run`)")
    test.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default=api.default_loop())
    test.add_argument("--report-junit", metavar="FILE", help="write a JUnit XML report")
    test.add_argument("--report-tap", metavar="FILE", help="write a TAP version 14 report")
    test.add_argument("--report-json", metavar="FILE", help="write a JSON report")
    test.add_argument("paths", nargs="+", metavar="PATH")

    replay = sub.add_parser(
        "replay", help="replay a HAR recording as a mock server or a regression test",
        description="Replay the WebSocket conversations of FILE.har (evt's --record, or a "
                    "HAR exported by Chrome or Firefox DevTools).",
        epilog="Exit codes: 0 the conversation matched (or the mock was stopped), 1 it did "
               "not, 2 usage error or a file that is not a HAR recording.")
    replay.add_argument("file", metavar="FILE.har")
    replay.add_argument("--serve", metavar="HOST:PORT", help="be a mock server on HOST:PORT")
    replay.add_argument("--url", nargs="?", const="", metavar="URL",
                        help="test the server at URL (default: the recorded one)")
    replay.add_argument("--match", choices=("exact", "json", "any"), default="exact",
                        help="how a message is compared (default exact)")
    replay.add_argument("--ignore", metavar="KEY,...",
                        help="with --match json: keys left out of the comparison")
    replay.add_argument("--pace", choices=("fast", "recorded"), default="fast",
                        help="send at once (default) or keep the recorded gaps")
    replay.add_argument("--timeout", default="10s", metavar="D",
                        help="--url: how long to wait for each server message (default 10s)")

    codegen = sub.add_parser("codegen", help="write an evt script from a HAR recording",
                             description="Print an evt script that does what `evt replay` "
                                         "does with FILE.har, for a person to edit.")
    codegen.add_argument("file", metavar="FILE.har")
    which = codegen.add_mutually_exclusive_group(required=True)
    which.add_argument("--serve", action="store_true", help="a mock server script")
    which.add_argument("--client", action="store_true", help="a client (regression test)")

    check = sub.add_parser("check", help="parse and check scripts, print every problem")
    check.add_argument("files", nargs="+", metavar="FILE")

    sub.add_parser("lsp", help="a Language Server for editors, on standard input and output",
                   description="Speak the Language Server Protocol (JSON-RPC) on stdio.")

    repl = sub.add_parser("repl", help="an interactive session (optionally loading FILE)")
    repl.add_argument("-v", "--verbose", action="store_true")
    repl.add_argument("--trace", action="store_true")
    repl.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default=api.default_loop())
    repl.add_argument("file", nargs="?", metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> NoReturn:
    from lang.limits import raise_recursion_limit

    raise_recursion_limit()
    for stream in (sys.stdout, sys.stderr):
        # a terminal that cannot show a character gets an escape, not a UnicodeEncodeError
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    opts = _parser().parse_args(argv)
    try:
        if opts.command == "run":
            code = cmd_run(opts)
        elif opts.command == "test":
            code = cmd_test(opts)
        elif opts.command == "replay":
            from lang.recording.commands import cmd_replay
            code = cmd_replay(opts, host_port, duration_option)
        elif opts.command == "codegen":
            from lang.recording.commands import cmd_codegen
            code = cmd_codegen(opts)
        elif opts.command == "check":
            code = cmd_check(opts.files)
        elif opts.command == "repl":
            from lang.repl import cmd_repl
            code = cmd_repl(opts)
        elif opts.command == "lsp":
            from lang.lsp import cmd_lsp
            code = cmd_lsp()
        else:
            _parser().print_help(sys.stderr)
            code = 2
    except KeyboardInterrupt:  # Ctrl-C while a big file is read or checked
        code = 130
    _exit(code)


def _exit(code: int) -> NoReturn:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # stdout is gone: keep Python from complaining about it at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def load_checked(path: str, builtins: dict[str, Any]) -> tuple[list[A.Node] | None, int]:
    """Parse, follow imports and check. Prints every problem; returns (decls, 0) or
    (None, exit code)."""
    checked = api.load_and_check(path, builtins)
    if checked.usage is not None:
        _err(checked.usage.format())
        return None, 2
    if checked.syntax is not None:
        # Past a syntax error the rest of the file cannot be read reliably, so this is the
        # one problem reported; the summary says why no more follow.
        _err(checked.syntax.format())
        _err(f"1 error in {path} (checking stops at a syntax error)")
        return None, 3
    if checked.too_deep:
        _err(too_deep(path))
        return None, 3
    if checked.problems:
        for d in checked.problems:
            _err(d.format())
        n = len(checked.problems)
        _err(f"{n} error{'s' if n != 1 else ''} in {path}")
        return None, 3
    assert checked.decls is not None
    return checked.decls, 0


def too_deep(path: str) -> str:
    return (f"{path}: error: an expression or block is nested too deeply to compile (a chain "
            "of thousands of operators?); split it up")


def cmd_test(opts: argparse.Namespace) -> int:
    from lang.testing.runner import Interrupted, Options, Runner, UsageError, cpu_count

    try:
        timeout = duration_option(opts.timeout)
    except ValueError as e:
        _err(f"evt: error: --timeout: {e}")
        return 2
    if opts.jobs is not None and opts.jobs < 1:
        _err("evt: error: -j/--jobs takes a number of processes, at least 1")
        return 2
    runner = Runner(Options(
        paths=opts.paths, jobs=opts.jobs or cpu_count(), keyword=opts.keyword,
        timeout=timeout, sets=opts.sets, virtual_time=opts.virtual_time, loop=opts.loop,
        junit=opts.report_junit, tap=opts.report_tap, json=opts.report_json))
    try:
        return runner.run()
    except UsageError as e:
        _err(f"evt: error: {e}")
        return 2
    except Interrupted as e:
        return e.code


def duration_option(text: str) -> float:
    """A duration as evt writes one (500ms, 30s, 2m, 1h) or a number of seconds."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*", text)
    if m is None or float(m[1]) <= 0:
        raise ValueError(f"expected a duration such as 30s or 2m, got '{text}'")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2] or "s"]


def cmd_check(files: list[str]) -> int:
    builtins = api.builtins()
    worst = 0
    for path in files:
        _, code = load_checked(path, builtins)
        worst = max(worst, code)
    return worst


def overrides_for(sets: list[str], decls: list[A.Node]) -> dict[str, Any]:
    """--set NAME=VALUE options -> {name: value}. Raises ValueError with a usage message."""
    lets = {d.name for d in decls if isinstance(d, A.Let)}
    out: dict[str, Any] = {}
    for item in sets:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ValueError(f"--set takes NAME=VALUE, got '{item}'")
        if name not in lets:
            raise ValueError(f"--set {name}: the script has no top-level 'let {name}'")
        out[name] = api.parse_set_value(value)
    return out


def cmd_run(opts: argparse.Namespace) -> int:
    if opts.workers is not None:
        from lang.workers import cmd_workers
        return cmd_workers(opts, sys.modules[__name__])  # (it uses load_checked & co.)
    builtins = api.builtins()
    decls, code = load_checked(opts.file, builtins)
    if decls is None:
        return code
    try:
        overrides = overrides_for(opts.sets, decls)
    except ValueError as e:
        _err(f"evt: error: {e}")
        return 2

    extra, code = cli_thresholds(opts.thresholds, decls, builtins)
    if extra is None:
        return code
    listen = None
    if opts.metrics_listen is not None:
        try:
            listen = host_port(opts.metrics_listen)
        except ValueError as e:
            _err(f"evt: error: --metrics-listen: {e}")
            return 2

    from lang.runtime.stdio import Stdio

    stdio = Stdio()
    rt = api.make_runtime(builtins, args=list(opts.args), verbose=opts.verbose,
                          trace=opts.trace, stdio=stdio, metrics=not opts.no_metrics)
    rt.fail_fast = opts.fail_fast
    try:
        inits = api.install(rt, decls + extra, overrides)
    except RecursionError:
        _err(too_deep(opts.file))
        return 3
    if opts.record is not None:
        from lang.recording.commands import make_recorder

        rt.recorder, problem = make_recorder(opts.record, api.VERSION)
        if problem is not None:
            _err(f"evt: error: {problem}")
            return 2
    if rt.metrics is not None:
        from lang.interpreter.measuring import Measuring, MeasuringOptions

        progress = stdio if _is_terminal(2) and not opts.quiet else None
        rt.measuring = Measuring(rt.metrics, MeasuringOptions(
            summary=opts.summary, out_path=opts.metrics_out, listen=listen,
            report_html=opts.report_html, title=os.path.basename(opts.file),
            progress=progress), thresholds=rt.thresholds, say=rt.diag)
    elif rt.thresholds or opts.summary or opts.metrics_out or listen or opts.report_html:
        _err("evt: warning: --no-metrics: nothing is measured, so thresholds, --summary, "
             "--metrics-out, --metrics-listen and --report-html have nothing to report")
    return api.run(rt, inits, opts.loop, warn=_err, virtual_time=opts.virtual_time)


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def cli_thresholds(texts: list[str], decls: list[A.Node], builtins: dict[str, Any]
                   ) -> tuple[list[A.Node] | None, int]:
    """--threshold EXPR options, parsed and checked as `threshold EXPR` lines of the
    script: (the declarations, 0), or (None, 2) once their problems are printed."""
    from lang.check import check
    from lang.errors import EvtSyntaxError
    from lang.syntax.parser import parse_module

    out: list[A.Node] = []
    bad = False
    for i, text in enumerate(texts):
        where = "--threshold" if i == 0 else f"--threshold[{i + 1}]"  # each its own source
        try:
            parsed = parse_module(f"threshold {text}", where).decls
        except EvtSyntaxError as e:
            _err(e.format())
            bad = True
            continue
        if len(parsed) != 1 or not isinstance(parsed[0], A.Threshold):
            _err(f"evt: error: --threshold takes one condition, got '{text}'")
            bad = True
            continue
        out.append(parsed[0])
    if out and not bad:
        problems = [d for d in check(decls + out, builtins)
                    if d.span.file.startswith("--threshold")]
        for d in problems:
            _err(d.format())
        bad = bool(problems)
    return (None, 2) if bad else (out, 0)


def host_port(text: str) -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT too; PORT 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got '{text}'")
    return host.strip("[]"), int(port)
