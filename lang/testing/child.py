"""One test, run in a process of its own (forked by the runner): a fresh program of the
test's file, its outcome as a small JSON document on a pipe. Standard output and error are
the runner's pipes; standard input is /dev/null."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

from lang import ast as A
from lang.testing.results import ERROR, FAILED, PASSED, SKIPPED

# the exit codes of a program ended by a signal (the runner's SIGTERM at --timeout)
_SIGNALLED = {129: "SIGHUP", 130: "SIGINT", 143: "SIGTERM"}


@dataclass
class Job:
    """What one child runs: the file's checked declarations (inherited through the fork, so
    nothing is parsed twice), the test's name (None: a file with no tests) and the run's
    options."""

    path: str
    name: str | None
    decls: list[A.Node]
    overrides: dict[str, Any]
    virtual_time: bool = False
    loop: str = "auto"


def warm_up(loop: str) -> None:
    """Import in the runner what every test's program needs, once: a forked child then
    starts with it loaded (a test that passes takes a few ms, not the 0.1-0.7 s of these
    imports in each child). Nothing here starts a thread or an event loop."""
    import importlib

    import anyio._backends._asyncio  # noqa: F401  anyio loads its backend per run

    import lang.endpoints
    import lang.interpreter.measuring
    import lang.interpreter.program
    import lang.runtime.stdio
    import lang.runtime.virtualtime  # noqa: F401

    for name in ("lang.wire.client", "lang.wire.server", "lang.endpoints.client",
                 "lang.endpoints.server", "lang.testing.reports", "ddsketch",
                 "prometheus_client"):
        importlib.import_module(name)
    if loop != "asyncio":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass


def run(job: Job, builtins: dict[str, Any]) -> dict[str, Any]:
    """Run the test to the end of its program's shutdown; return its outcome: {status,
    message, details}."""
    from lang import api
    from lang.interpreter.measuring import Measuring, MeasuringOptions
    from lang.interpreter.testing import TestRun, test_decls
    from lang.runtime.stdio import Stdio

    rt = api.make_runtime(builtins, args=[], stdio=Stdio())
    test = rt.test = TestRun(job.name)
    # in a test the first error ends it (it has failed; going on could only hang CI): SPEC
    # §13. A file with no tests runs as `evt run` runs it.
    rt.fail_fast = job.name is not None
    try:
        inits = api.install(rt, test_decls(job.decls, job.name), job.overrides)
    except RecursionError:
        return {"status": ERROR, "message": "nested too deeply to compile", "details": ""}
    if rt.metrics is not None:
        def say(line: str) -> None:  # a breached threshold (or a report it cannot write)
            rt.note_failure(line)
            rt.diag(line)

        rt.measuring = Measuring(rt.metrics, MeasuringOptions(title=os.path.basename(job.path)),
                                 thresholds=rt.thresholds, say=say)
    code = api.run(rt, inits, job.loop, virtual_time=job.virtual_time)
    failures = test.failures
    details = "\n".join(failures)
    if test.more_failures:
        details += f"\n... and {test.more_failures} more (all of them in its stderr)"
    if code in _SIGNALLED:
        return {"status": ERROR, "message": f"ended by {_SIGNALLED[code]}", "details": details}
    if failures or code != 0:
        message = failures[0].splitlines()[0] if failures else f"the program ended with exit " \
                                                                f"code {code}"
        if not failures:
            details = message
        return {"status": FAILED, "message": message, "details": details}
    if test.skipped is not None:
        return {"status": SKIPPED, "message": test.skipped, "details": ""}
    return {"status": PASSED, "message": "", "details": ""}


def main_in_child(job: Job, builtins: dict[str, Any], result_fd: int) -> None:
    """The forked child's whole life: run, report on `result_fd`, exit (never return)."""
    try:
        try:
            outcome = run(job, builtins)
        except BaseException:  # a bug of ours: it becomes the test's error, not a hang
            outcome = {"status": ERROR, "message": "internal error (a bug in evt, please "
                                                   "report it)",
                       "details": traceback.format_exc()}
        data = json.dumps(outcome).encode()
        view = memoryview(data)
        while view:
            n = os.write(result_fd, view)
            view = view[n:]
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    finally:
        os._exit(0)
