"""`evt repl`: a live session into the running event loop.

Rules of this module:
- The program runs while the prompt waits: handlers fire, timers tick, and their output
  appears above the prompt without garbling the line being typed (prompt_toolkit's
  patch_stdout, on anyio's asyncio backend).
- An input is complete when the parser says so: an open bracket or block, or a trailing
  operator, asks for another line (the parser's `incomplete`, not a brace counter).
- Declarations replace earlier ones of the same name (a handler: of the same event) and say
  so; a `let` at the prompt makes a project variable, and so does `expect ... as NAME`; a
  bare expression prints its value in literal form.
- Ctrl-C cancels the line being typed or the statement running, never the session; Ctrl-D
  (or EOF, or :quit) leaves with the normal shutdown.
- When stdin is not a terminal: no banner, no prompt, values on stdout, diagnostics on
  stderr, and the session goes on after an error, so it can be scripted and tested. Every
  line of input has its number (<repl>:LINE:COL), blank lines and commands too.
- What the checker refuses changes nothing: the names of an input are committed only when
  the whole input is accepted.
- The exit code: `exit N`'s, else 1 when anything in the session failed (a syntax, check or
  runtime error, a failed assert), else 0.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from prompt_toolkit.completion import Completer, Completion

from lang import ast as A
from lang.check.checker import Checker, Symbols
from lang.compile import Layout, Scope
from lang.errors import SOURCES, Diagnostic, EvtError, EvtSyntaxError, EvtUsageError, quote_source
from lang.interpreter.events import Installed, SceneInfo
from lang.interpreter.program import Runtime
from lang.runtime.core import AssertFailed, Inv, shutdown_signals, signal_exit_code
from lang.runtime.stdio import Stdio, owes, read_lines, settle
from lang.syntax.parser import parse_repl
from lang.values import to_repr
from lang.wire.proxy import shown_proxy

SOURCE = "<repl>"
PROMPT = "evt> "
MORE = "...  "
COMMANDS = {
    ":help": "this help",
    ":vars": "project and scene variables",
    ":conns": "each connection and server: state, address, peers",
    ":metrics": "the metrics so far, as `evt run --summary` prints them",
    ":load FILE": "load a script into the session (its `on project start` runs)",
    ":quit": "leave (Ctrl-D does the same)",
}


class Repl:
    def __init__(self, rt: Runtime, builtins: dict[str, Any], interactive: bool) -> None:
        self.rt = rt
        self.builtins = builtins
        self.interactive = interactive
        self.symbols = Symbols()
        self.buffer: list[str] = []
        self.running: anyio.CancelScope | None = None

    # ------------------------------------------------------------ output

    def out(self, text: str) -> None:
        self.rt.write(text)

    def err(self, text: str) -> None:
        self.rt.diag(text)

    def error(self, text: str) -> None:
        """A diagnostic for something that failed: the session goes on, its exit code is 1."""
        self.rt.failed = True
        self.err(text)

    # ------------------------------------------------------------ the session

    async def session(self) -> None:
        """Runs beside the program; ends it when the user leaves."""
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._sigint)  # handlers in place before any input runs
                if self.interactive:
                    await self._interactive()
                else:
                    await self._piped()
                tg.cancel_scope.cancel()
        finally:
            self.rt.request_exit(None)

    async def _sigint(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                      ) -> None:
        """At the prompt the terminal is raw and Ctrl-C is a key; while a statement runs it
        is a signal, which cancels that statement. SIGTERM (and SIGHUP, the terminal going
        away, unless it was ignored at start) ends the session with the normal shutdown
        (exit code 143, 129), as it ends `evt run`."""
        try:
            receiver = anyio.open_signal_receiver(*shutdown_signals())
        except (NotImplementedError, RuntimeError, ValueError):
            task_status.started()
            return
        with receiver as signals:
            task_status.started()
            async for signum in signals:
                if signum != signal.SIGINT:
                    rt = self.rt
                    if rt.signal_code is None:
                        rt.signal_code = signal_exit_code(signum)
                    rt.done.set()
                elif self.running is not None:
                    self.running.cancel()

    async def _piped(self) -> None:
        send, receive = anyio.create_memory_object_stream[str | NotUtf8 | None](16)
        token = anyio.lowlevel.current_token()

        def reader() -> None:
            try:  # os.read, not sys.stdin: see lang.runtime.stdio
                for batch in read_lines(0):
                    for raw in batch:
                        anyio.from_thread.run(send.send, decode_line(raw), token=token)
            except Exception:
                pass
            try:
                anyio.from_thread.run(send.send, None, token=token)
            except Exception:
                pass

        threading.Thread(target=reader, daemon=True, name="evt repl stdin").start()
        async with receive:
            async for line in receive:
                if line is None:
                    break
                if isinstance(line, NotUtf8):
                    self.not_utf8(line)
                    continue
                if not await self.feed(line):
                    break
        if self.buffer:  # EOF inside an unfinished input: report what is wrong with it
            await self._complete("\n".join(self.buffer), final=True)

    async def _interactive(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.lexers import PygmentsLexer
        from prompt_toolkit.patch_stdout import patch_stdout

        from lang.highlight import EvtLexer

        history: Any
        try:
            path = history_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(path))
        except OSError:
            history = InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history, lexer=PygmentsLexer(EvtLexer), completer=EvtCompleter(self),
            complete_while_typing=False)
        from lang.api import VERSION

        self.out(f"evt {VERSION}: a live session. :help for help, Ctrl-D to leave.")
        with patch_stdout(raw=True):
            while True:
                prompt = MORE if self.buffer else PROMPT
                try:
                    line = await session.prompt_async(prompt, handle_sigint=False)
                except KeyboardInterrupt:
                    self.buffer = []  # Ctrl-C: forget the line (and an unfinished input)
                    continue
                except EOFError:
                    break
                if not await self.feed(line):
                    break

    # ------------------------------------------------------------ one line

    async def feed(self, line: str) -> bool:
        """Take one line; run the input when it is complete. False: leave the session."""
        stripped = line.strip()
        if not self.buffer and (not stripped or stripped.startswith(":")):
            SOURCES.extend(SOURCE, line)  # every line has its number, these too
            return await self.command(stripped) if stripped else True
        self.buffer.append(line)
        return await self._complete("\n".join(self.buffer), final=False)

    async def _complete(self, text: str, final: bool) -> bool:
        first = SOURCES.next_line(SOURCE)
        try:
            nodes = parse_repl(text, SOURCE, first)
        except EvtSyntaxError as e:
            if e.incomplete and not final:
                return True  # ask for another line
            if not final and dangling_else_unfinished(text):
                return True  # read the whole `else` block, to refuse it as one input
            self.buffer = []
            SOURCES.extend(SOURCE, text)
            self.error(e.format())
            if ELSE_START.match(text):
                self.err("note: an input runs as soon as it is complete, so at the prompt "
                         "'else' goes on the line of the '}': `} else {`")
            return True
        self.buffer = []
        SOURCES.extend(SOURCE, text)
        return await self.execute(nodes)

    def not_utf8(self, line: NotUtf8) -> None:
        """A line of piped input that is not UTF-8: an error (as a script file that is not
        UTF-8 is), and the end of the unfinished input it was part of."""
        if self.buffer:  # the lines before it keep their numbers
            SOURCES.extend(SOURCE, "\n".join(self.buffer))
            self.buffer = []
        number = SOURCES.extend(SOURCE, line.text)
        span = A.Span(SOURCE, number, line.col)
        self.error(Diagnostic(span, "this line is not UTF-8 text (bad byte here)").format())

    def check(self, nodes: list[A.Node]) -> tuple[list[Diagnostic], Symbols]:
        """Check an input against what the session declared so far. The names it declares
        go into a copy, which the caller keeps only when the input is accepted: a refused
        `let` or `func` must not leave a name behind that nothing at run time backs."""
        trial = copy.deepcopy(self.symbols)
        return Checker(self.builtins, trial, repl=True).check(nodes), trial

    async def execute(self, nodes: list[A.Node]) -> bool:
        try:
            return await self._execute(nodes)
        except RecursionError:
            self.error("<repl>: error: this input is nested too deeply to compile; split it up")
            return True
        except EvtError as e:  # a compile-time problem the checker did not foresee
            self.error(e.format())
            return True

    async def _execute(self, nodes: list[A.Node]) -> bool:
        decls = [n for n in nodes if not isinstance(n, A.Stmt | A.Import)]
        stmts = [n for n in nodes if isinstance(n, A.Stmt)]
        for imp in (n for n in nodes if isinstance(n, A.Import)):
            await self.load(imp.path)
        problems, symbols = self.check([*decls, *stmts])
        if problems:
            self.error("".join(d.format() for d in problems))
            return True
        self.symbols = symbols
        if decls:
            installed = await self.install(decls)
            self._notes(installed)
        if stmts:
            return await self.run_statements(stmts)
        return True

    def _notes(self, installed: Installed) -> None:
        for note in installed.notes:
            self.err(f"note: {note}")

    async def install(self, decls: list[A.Node]) -> Installed:
        """Install checked declarations. What a redeclaration replaces is dealt with first:
        a connection or server redeclared in the other role is stopped (else it would go on
        running, unreachable, and never be closed); a scene gets a fresh definition, so the
        current activation keeps the one its variables and timers were made for until the
        scene is entered again."""
        rt = self.rt
        for d in decls:
            if isinstance(d, A.Connection | A.Server):
                role = "connection" if isinstance(d, A.Connection) else "server"
                old = rt.endpoints.get(d.name)
                if old is not None and old.role != role:
                    with anyio.CancelScope() as scope:  # Ctrl-C gives up waiting
                        self.running = scope
                        try:
                            await old.evt_stop(d.span)
                        except Exception as e:
                            self.err(f"note: stopping {old.role} {d.name}: {e}")
                        finally:
                            self.running = None
                    del rt.endpoints[d.name]
                    self.err(f"note: {old.role} {d.name} stopped and replaced by a {role}")
            elif isinstance(d, A.Scene) and d.name in rt.scenes:
                rt.scenes[d.name] = SceneInfo(d.name)
        return rt.install_decls(decls)

    async def run_statements(self, stmts: list[A.Stmt]) -> bool:
        rt = self.rt
        span = stmts[0].span
        scope = Scope(Layout(), None, "repl", "repl input")
        (fn, is_async), _, size = rt.compiler.body(A.Block(tuple(stmts), span=span), scope)
        fr: list[Any] = [None] * size
        fr[0] = Inv(rt, "repl input", span)
        with anyio.CancelScope() as scope_:
            self.running = scope_
            rt.expect_active += 1  # an input may `expect`: connections keep their log
            try:
                if is_async:
                    await fn(fr)
                else:
                    fn(fr)
            except AssertFailed as e:  # reported; unlike a script's, the session goes on
                message = f": {e.message}" if e.message else ""
                self.error(f"{e.span}: assertion failed{message}\n{quote_source(e.span)}")
            except Exception as e:
                rt.failure(e, "repl input", span)
            finally:
                rt.expect_active -= 1
                self.running = None
        if scope_.cancelled_caught:
            self.err("cancelled")
        if owes():  # it printed into a full buffer: the next input waits for room
            await settle()
        return not rt.done.is_set()

    # ------------------------------------------------------------ commands

    async def command(self, line: str) -> bool:
        word, _, arg = line.partition(" ")
        if word in (":quit", ":q", ":exit"):
            return False
        if word == ":help":
            self.out(self.help_text())
        elif word == ":vars":
            self.out(self.vars_text())
        elif word == ":conns":
            self.out(self.conns_text())
        elif word == ":metrics":
            self.out(self.metrics_text())
        elif word == ":load":
            if not arg.strip():
                self.command_error("usage: :load FILE")
            else:
                await self.load(arg.strip())
        else:
            self.command_error(f"unknown command {word}; :help lists the commands")
        return True

    def metrics_text(self) -> str:
        from lang.metrics.judging import judge, summary_lines

        registry = self.rt.metrics
        if registry is None:
            return "nothing is measured in this session"
        return "\n".join(summary_lines(registry, judge(registry, self.rt.thresholds)))

    def command_error(self, message: str) -> None:
        """A bad command, named by its line (the line just added to the source)."""
        number = SOURCES.next_line(SOURCE) - 1
        text = SOURCES.line(SOURCE, number) or ""
        col = len(text) - len(text.lstrip()) + 1
        self.error(Diagnostic(A.Span(SOURCE, number, col), message).format())

    async def load(self, path: str) -> None:
        """Load a script: its declarations join the session, its project variables are set,
        its timers start and its `on project start` handlers run."""
        from lang.syntax.loader import load

        rt = self.rt
        try:
            decls, problems = load(path)
        except (EvtUsageError, EvtSyntaxError) as e:
            self.error(e.format())
            return
        found, symbols = self.check(decls)
        problems += found
        if problems:
            self.error("".join(d.format() for d in problems))
            return
        self.symbols = symbols
        try:
            installed = await self.install(decls)
        except EvtError as e:
            self.error(e.format())
            return
        self._notes(installed)
        if not await rt.initialise(installed.inits):
            return
        for spec in installed.timers:
            rt.start_timer(spec)
        for h in installed.handlers:
            if h.key == ("project start",):
                rt.lifecycle.post(lambda h=h: rt.run_handler(h, None, None))

    def help_text(self) -> str:
        lines = ["Type declarations (connection, server, func, on, scene, import) and",
                 "statements; a bare expression prints its value. Commands:"]
        lines += [f"  {c:<12} {d}" for c, d in COMMANDS.items()]
        families: dict[str, list[str]] = {}
        for b in self.builtins.values():
            families.setdefault(b.family, []).append(b.name)
        lines.append("Built-in functions:")
        lines += [f"  {fam:<11} {' '.join(sorted(names))}" for fam, names in families.items()]
        return "\n".join(lines)

    def vars_text(self) -> str:
        rt = self.rt
        lines = [f"{name} = {to_repr(rt.globals[i])}" for name, i in rt.global_slots.items()]
        act = rt.current
        if act is not None:
            lines.append(f"scene {act.info.name}:")
            lines += [f"  {name} = {to_repr(act.vars[i])}"
                      for name, i in act.info.var_slots.items()]
        return "\n".join(lines) if lines else "(no variables)"

    def conns_text(self) -> str:
        lines = []
        for name, ep in self.rt.endpoints.items():
            if ep.evt_type == "connection":
                for c in [ep, *(c for c in ep.evt_connections() if c is not ep)]:
                    lines.append(connection_line(c))
            else:
                address = ep.evt_address()
                state = f"listening on {address}" if address else "not listening"
                n = len(ep.evt_peers())
                lines.append(f"{name}: server, {state}, {n} peer{'s' if n != 1 else ''}")
        return "\n".join(lines) if lines else "(no connections or servers)"


def connection_line(c: Any) -> str:
    """A connection in `:conns`: its state, url, remote address, and the proxy its
    configuration goes through (never its credentials)."""
    cfg = c.config
    where = f" {cfg['url']}" if cfg.get("url") else ""
    remote = c.evt_address()
    extra = f" (remote {remote})" if remote else ""
    proxy = shown_proxy(cfg.get("proxy", True), cfg.get("url"), cfg.get("port"))
    via = f" via proxy {proxy}" if proxy else ""
    return f"{c.label}: connection, {c.state}{where}{extra}{via}"


ELSE_START = re.compile(r"\s*else\b")


def dangling_else_unfinished(text: str) -> bool:
    """Whether `text`, an input that starts with an `else` (which at the prompt cannot
    continue the `if` before it: that one already ran), has its block still open. Then the
    whole block is read and refused as one input, rather than its lines running one by one
    as if they were not in an `else` at all."""
    m = ELSE_START.match(text)
    if m is None:
        return False
    rest = text[m.end():]
    probe = rest if re.match(r"\s*if\b", rest) else "if true" + rest
    try:
        parse_repl(probe, "<probe>")
    except EvtSyntaxError as e:
        return e.incomplete
    return False


class NotUtf8:
    """A line of piped input that is not UTF-8: its text (bad bytes replaced) and the
    column of the first bad byte."""

    def __init__(self, text: str, col: int) -> None:
        self.text = text
        self.col = col


def decode_line(raw: bytes | str) -> str | NotUtf8:
    """One line of piped input, without its newline, decoded strictly as UTF-8."""
    if isinstance(raw, str):
        return raw.rstrip("\n")
    raw = raw.rstrip(b"\n")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        col = len(raw[: e.start].decode("utf-8", "replace")) + 1
        return NotUtf8(raw.decode("utf-8", "replace"), col)


def history_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                              ".local", "state")
    return Path(state) / "evt" / "repl_history"


class EvtCompleter(Completer):
    """Completes keywords, declared names, connection names, built-ins and commands."""

    def __init__(self, repl: Repl) -> None:
        self.repl = repl

    def words(self) -> set[str]:
        from lang.highlight import CONSTANTS, KEYWORDS

        rt = self.repl.rt
        names = set(KEYWORDS) | set(CONSTANTS) | set(self.repl.builtins)
        names |= set(rt.global_slots) | set(rt.funcs) | set(rt.endpoints) | set(rt.scenes)
        if rt.current is not None:
            names |= set(rt.current.info.var_slots)
        return names

    def get_completions(self, document: Any, complete_event: Any) -> Any:
        text = document.text_before_cursor
        if text.lstrip().startswith(":") and " " not in text.strip():
            word = text.strip()
            for c in COMMANDS:
                name = c.split()[0]
                if name.startswith(word):
                    yield Completion(name, start_position=-len(word))
            return
        word = document.get_word_before_cursor(WORD=False)
        if not word or not (word[0].isalpha() or word[0] == "_"):
            return
        for name in sorted(self.words()):
            if name.startswith(word) and name != word:
                suffix = "(" if name in self.repl.builtins or name in self.repl.rt.funcs else ""
                yield Completion(name + suffix, start_position=-len(word))


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")


def cmd_repl(opts: Any) -> int:
    from lang import api

    builtins = api.builtins()
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # at a terminal, prompt_toolkit's patch_stdout takes the output; piped, lang.runtime.stdio does
    rt = Runtime(builtins=builtins, verbose=opts.verbose, trace=opts.trace, repl=True,
                 stdio=None if interactive else Stdio())
    repl = Repl(rt, builtins, interactive)

    async def session() -> None:
        if opts.file:
            await repl.load(opts.file)
        await repl.session()

    api.raise_open_file_limit()
    try:
        return anyio.run(rt.main, [], False, session, backend="asyncio",
                         backend_options=api.loop_options(opts.loop, warn=_warn))
    except KeyboardInterrupt:
        return 130
