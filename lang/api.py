"""The one pipeline: load (with imports), parse, check, compile, run.

The CLI (`evt run`, `evt check`), the REPL and the tests all go through these functions, so
each step is wired once. Nothing here prints: problems come back as values and the caller
decides how to show them and which exit code they mean (lang.cli).

`evt check` must start fast, so this module imports only the syntax and check layers at the
top; the runtime, the event loop and the network stack are imported by the functions that
need them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lang import ast as A
from lang.check import check
from lang.errors import SOURCES, Diagnostic, EvtSyntaxError, EvtUsageError
from lang.syntax.loader import load

if TYPE_CHECKING:
    from lang.interpreter.program import Runtime

VERSION = "0.1.0"
LOOPS = ("auto", "uvloop", "asyncio")


def builtins() -> dict[str, Any]:
    """The standard library's registry of built-ins (every family loaded)."""
    import stdlib

    return stdlib.load()


@dataclass
class Checked:
    """A script loaded and checked. `decls` is None when it cannot run: then `usage` (an
    unreadable file), `syntax` (the one syntax error) or `problems` (every check error, in
    source order) says why; `too_deep` when it is nested too deeply to analyse."""

    path: str
    decls: list[A.Node] | None = None
    problems: list[Diagnostic] = field(default_factory=list)
    usage: EvtUsageError | None = None
    syntax: EvtSyntaxError | None = None
    too_deep: bool = False


def load_and_check(path: str, registry: dict[str, Any]) -> Checked:
    """Parse PATH, follow its imports and check the whole program."""
    try:
        decls, problems = load(path)
        problems = sorted(problems + check(decls, registry),
                          key=lambda d: SOURCES.order_key(d.span))
    except EvtUsageError as e:
        return Checked(path, usage=e)
    except EvtSyntaxError as e:
        return Checked(path, syntax=e)
    except RecursionError:
        return Checked(path, too_deep=True)
    if problems:
        return Checked(path, problems=problems)
    return Checked(path, decls=decls)


def parse_set_value(text: str) -> Any:
    """--set NAME=VALUE's VALUE: an evt literal (3, true, [1, 2], "x") when it is one, else
    the text itself."""
    from lang.check import NOT_LITERAL, literal_value
    from lang.syntax.parser import parse_expr

    try:
        value = literal_value(parse_expr(text, "--set"))
    except EvtSyntaxError:
        return text
    return text if value is NOT_LITERAL else value


def default_loop() -> str:
    """--loop's default: EVT_LOOP from the environment, else auto (uvloop where installed)."""
    loop = os.environ.get("EVT_LOOP", "auto")
    return loop if loop in LOOPS else "auto"


def loop_options(loop: str, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """anyio's backend options for --loop (auto, uvloop, asyncio)."""
    if loop == "asyncio":
        return {"use_uvloop": False}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if loop == "uvloop" and warn is not None:
            warn("evt: warning: uvloop is not installed; using asyncio")
        return {"use_uvloop": False}
    return {"use_uvloop": True}


def make_runtime(registry: dict[str, Any], **options: Any) -> Runtime:
    """A Runtime for a program (options: args, out, err, verbose, trace, repl, stdio)."""
    from lang.interpreter.program import Runtime

    return Runtime(builtins=registry, **options)


def install(rt: Runtime, decls: list[A.Node], overrides: dict[str, Any] | None = None
            ) -> list[tuple[int, Any]]:
    """Compile the declarations into the runtime; returns the initial values to set.
    Raises RecursionError for a program nested too deeply to compile."""
    return rt.install(decls, overrides)


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (SPEC §11: 10,000 connections
    of one declaration must work); returns the limit now in force."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def tune_gc() -> None:
    """Before a program runs: what evt made to start (its modules, the program's tree and
    closures, about a hundred thousand objects that live as long as the process) is moved
    out of the cyclic collector's sight, and a collection of the youngest objects waits for
    10,000 new ones rather than 700. A full collection traversed all of it (15-20 ms each,
    one or two in a short load test), and with a thousand connections open the young
    collections ran 300 times, promoting what every waiting handler holds: the collector
    took 70 ms of a 1.7 s run of 1,000 connections x 40 round trips (30 ms with this), and
    21 of 0.95 s at 50 x 800 (8 ms). Cycles are still collected; they wait a little
    longer."""
    import gc

    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0: collection is off (someone chose so)
        gc.set_threshold(max(young, 10_000), middle, old)


def tune_memory() -> bool:
    """glibc's malloc keeps up to 64 MiB free at the top of its heap rather than 128 KiB, and
    serves blocks up to 4 MiB from it (lang/runtime/_malloc.c): trimming and faulting the
    heap in again cost a server of 64 KiB messages half again its CPU (bench/RESULTS.md).
    Left alone when the user chose malloc's settings (MALLOC_*_ or GLIBC_TUNABLES), or
    where the extension was not built or malloc is not glibc's. Whether it was set."""
    import os

    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") and k.endswith("_")
                                             for k in os.environ):
        return False
    try:
        from lang.runtime._malloc import keep
    except ImportError:
        return False
    return bool(keep(64 << 20, 4 << 20))


def run(rt: Runtime, inits: list[tuple[int, Any]], loop: str = "auto",
        warn: Callable[[str], None] | None = None, virtual_time: bool = False) -> int:
    """Run the program on a new event loop until it ends; returns its exit code. The
    open-file limit is raised to the hard limit first. `virtual_time` (SPEC §13): an
    asyncio loop whose clock jumps to the next deadline when the program is idle (uvloop's
    clock cannot be replaced, so `loop` is then ignored)."""
    import anyio

    raise_open_file_limit()
    tune_gc()
    tune_memory()
    if virtual_time:
        from lang.runtime.virtualtime import new_event_loop

        options: dict[str, Any] = {"loop_factory": new_event_loop}
    else:
        options = loop_options(loop, warn)
    try:
        return anyio.run(rt.main, inits, backend="asyncio", backend_options=options)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        return 130
