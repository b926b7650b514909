"""`evt test` (SPEC §13): find the test files, check each once, run every test in a fresh
process (at most --jobs at a time), print a line as each ends, write the reports.

Rules of this module:
- Each test is a forked child of this process (lang.testing.child): its program starts from
  nothing, so tests never share variables, connections or ports, and a test that hangs or
  crashes is one failed test, never the end of the run. This process runs no event loop
  and no thread, so forking it is safe.
- A test still running at --timeout gets SIGTERM (its program shuts down as `evt run`'s
  does: `on project stop` runs) and, if it has not ended 5 s later, SIGKILL.
- Output lines come in the order tests end; the reports are in file and declaration order.
"""

from __future__ import annotations

import fnmatch
import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from lang import api
from lang import ast as A
from lang.interpreter.testing import test_names
from lang.testing.child import Job, main_in_child, warm_up
from lang.testing.results import ERROR, FAILED, PASSED, SKIPPED, TestResult

PATTERNS = ("*_test.evt", "test_*.evt")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
KILL_AFTER = 5.0  # seconds between the SIGTERM at --timeout and a SIGKILL
MAX_OUTPUT = 1 << 20  # bytes of one test's standard output (and of its error) kept


class UsageError(Exception):
    """Exit code 2: a path that does not exist, a bad option, nothing to run."""


class Interrupted(Exception):
    """SIGTERM or SIGHUP to the runner (a CI job cancelled): the tests running are stopped
    as at Ctrl-C, and the run ends with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.code = 128 + signum


def _interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@dataclass
class Options:
    paths: list[str]
    jobs: int = 1
    keyword: str | None = None
    timeout: float = 60.0
    sets: list[str] = field(default_factory=list)
    virtual_time: bool = False
    loop: str = "auto"
    junit: str | None = None
    tap: str | None = None
    json: str | None = None


def discover(paths: list[str]) -> list[str]:
    """The files to run: a file named is run whatever its name; a directory is searched
    recursively (hidden directories skipped) for *_test.evt and test_*.evt, in name order."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if any(fnmatch.fnmatchcase(f, p) for p in PATTERNS):
                        found.append(os.path.join(root, f))
        elif os.path.exists(path):
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    out: list[str] = []
    seen: set[str] = set()
    for f in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _overrides(sets: list[str], decls: list[A.Node]) -> dict[str, Any]:
    lets = {d.name for d in decls if isinstance(d, A.Let)}
    out: dict[str, Any] = {}
    for item in sets:
        name, _, value = item.partition("=")
        if name in lets:
            out[name] = api.parse_set_value(value)
    return out


@dataclass
class _Child:
    job: Job
    result: TestResult
    pid: int
    started: float
    deadline: float
    fds: dict[int, str]  # read end -> "out", "err" or "result"
    data: dict[str, bytearray] = field(default_factory=lambda: {
        "out": bytearray(), "err": bytearray(), "result": bytearray()})
    dropped: dict[str, int] = field(default_factory=lambda: {"out": 0, "err": 0})
    terminated: bool = False
    timed_out: bool = False


class Runner:
    def __init__(self, opts: Options, out: Any = None) -> None:
        self.opts = opts
        self.out = out or sys.stdout
        self.builtins = api.builtins()
        self.results: list[TestResult] = []
        self.bad_files = 0
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, _Child] = {}

    # ------------------------------------------------------------ planning

    def plan(self) -> list[tuple[Job, TestResult]]:
        """Check every file once; the tests to run, each with its result to fill in. A file
        that does not check is one result (an error) already."""
        files = discover(self.opts.paths)
        if not files:
            raise UsageError("no test files found (*_test.evt, test_*.evt) in "
                             + ", ".join(self.opts.paths))
        for item in self.opts.sets:
            name, eq, _ = item.partition("=")
            if not eq or not name:
                raise UsageError(f"--set takes NAME=VALUE, got '{item}'")
        used: set[str] = set()
        jobs: list[tuple[Job, TestResult]] = []
        for i, path in enumerate(files):
            checked = api.load_and_check(path, self.builtins)
            if checked.decls is None:
                self._not_checked(i, path, checked)
                continue
            decls = checked.decls
            used.update(d.name for d in decls if isinstance(d, A.Let))
            names: list[str | None] = list(test_names(decls, path)) or [None]
            overrides = _overrides(self.opts.sets, decls)
            for j, name in enumerate(names):
                shown = name if name is not None else os.path.basename(path)
                result = TestResult(path, shown, PASSED, order=(i, j),
                                    extra={"whole_file": name is None})
                if self.opts.keyword is not None and self.opts.keyword not in result.id:
                    continue
                jobs.append((Job(path, name, decls, overrides, self.opts.virtual_time,
                                 self.opts.loop), result))
        unknown = [s.partition("=")[0] for s in self.opts.sets
                   if s.partition("=")[0] not in used]
        if unknown and (jobs or not self.bad_files):
            raise UsageError(f"--set {unknown[0]}: no test file has a top-level "
                             f"'let {unknown[0]}'")
        if not jobs and not self.bad_files:
            raise UsageError(f"no test matches -k '{self.opts.keyword}'"
                             if self.opts.keyword is not None else "no tests to run")
        return jobs

    def _not_checked(self, i: int, path: str, checked: api.Checked) -> None:
        self.bad_files += 1
        if checked.usage is not None:
            lines = [checked.usage.format()]
        elif checked.syntax is not None:
            lines = [checked.syntax.format(),
                     f"1 error in {path} (checking stops at a syntax error)"]
        elif checked.too_deep:
            lines = [f"{path}: error: nested too deeply to check"]
        else:
            n = len(checked.problems)
            lines = [d.format() for d in checked.problems]
            lines.append(f"{n} error{'s' if n != 1 else ''} in {path}")
        details = "\n".join(line.rstrip("\n") for line in lines)
        result = TestResult(path, os.path.basename(path), ERROR, message=details.splitlines()[0],
                            details=details, order=(i, 0), extra={"whole_file": True})
        self._ended(result)

    # ------------------------------------------------------------ running

    def run(self) -> int:
        started = time.monotonic()
        jobs = self.plan()
        warm_up(self.opts.loop)
        pending = list(reversed(jobs))
        saved = {sig: signal.signal(sig, _interrupted) for sig in _STOP_SIGNALS}
        try:
            while pending or self.children:
                while pending and len(self.children) < max(1, self.opts.jobs):
                    self._spawn(*pending.pop())
                self._step()
        except (KeyboardInterrupt, Interrupted):  # the tests running shut down, then we end
            self._stop_all()
            raise
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        total = time.monotonic() - started
        self._summary(total)
        self._reports(total)
        if self.bad_files:
            return 3
        return 1 if any(r.status in (FAILED, ERROR) for r in self.results) else 0

    def _stop_all(self) -> None:
        """SIGTERM to every test still running; SIGKILL to those not ended KILL_AFTER later."""
        for c in self.children.values():
            _kill(c.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER
        while self.children:
            for pid in list(self.children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del self.children[pid]
            if time.monotonic() >= deadline:
                for pid in self.children:
                    _kill(pid, signal.SIGKILL)
                deadline = float("inf")
            if self.children:
                time.sleep(0.02)

    def _spawn(self, job: Job, result: TestResult) -> None:
        pipes = {name: os.pipe() for name in ("out", "err", "result")}
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # else the child would write the parent's buffered text again
        pid = os.fork()
        if pid == 0:  # the child
            for sig in _STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            try:
                os.setpgid(0, 0)  # Ctrl-C at the terminal reaches the runner, which stops us
            except OSError:
                pass
            for fd in list(self.sel.get_map() or ()):
                os.close(fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(pipes["out"][1], 1)
            os.dup2(pipes["err"][1], 2)
            for r, w in pipes.values():
                os.close(r)
                if w not in (1, 2) and w != pipes["result"][1]:
                    os.close(w)
            main_in_child(job, self.builtins, pipes["result"][1])
        now = time.monotonic()
        fds = {}
        for name, (r, w) in pipes.items():
            os.close(w)
            fds[r] = name
            self.sel.register(r, selectors.EVENT_READ, pid)
        self.children[pid] = _Child(job, result, pid, now, now + self.opts.timeout, fds)

    def _step(self) -> None:
        now = time.monotonic()
        wait = min((c.deadline for c in self.children.values()), default=now + 1) - now
        for key, _ in self.sel.select(max(0.0, min(wait, 1.0))):
            child = self.children[key.data]
            fd = key.fd
            name = child.fds[fd]
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.sel.unregister(fd)
                os.close(fd)
                del child.fds[fd]
                continue
            buf = child.data[name]
            room = MAX_OUTPUT - len(buf) if name != "result" else len(chunk)
            buf += chunk[:room]
            if room < len(chunk):
                child.dropped[name] += len(chunk) - max(room, 0)
        now = time.monotonic()
        for child in list(self.children.values()):
            if not child.fds:
                os.waitpid(child.pid, 0)
                del self.children[child.pid]
                self._finish(child, now)
            elif now >= child.deadline:
                if not child.terminated:
                    child.terminated = child.timed_out = True
                    child.deadline = now + KILL_AFTER
                    _kill(child.pid, signal.SIGTERM)
                else:
                    child.deadline = now + KILL_AFTER
                    _kill(child.pid, signal.SIGKILL)

    def _finish(self, child: _Child, now: float) -> None:
        import json

        r = child.result
        r.seconds = now - child.started
        r.stdout = _text(child.data["out"], child.dropped["out"])
        r.stderr = _text(child.data["err"], child.dropped["err"])
        try:
            outcome = json.loads(bytes(child.data["result"]) or b"null")
        except ValueError:
            outcome = None
        if child.timed_out:
            r.status = ERROR
            r.message = f"timed out after {_seconds(self.opts.timeout)}"
            r.details = r.message
        elif not isinstance(outcome, dict):
            r.status = ERROR
            r.message = "the test's process ended without a result"
            r.details = r.message + (f"\n{r.stderr.rstrip()}" if r.stderr.strip() else "")
        else:
            r.status = outcome.get("status", ERROR)
            r.message = outcome.get("message", "")
            r.details = outcome.get("details", "")
        self._ended(r)

    # ------------------------------------------------------------ output

    def _ended(self, r: TestResult) -> None:
        self.results.append(r)
        shown = r.file if r.extra.get("whole_file") else r.id
        if r.status == PASSED:
            line = f"PASS {shown} ({_duration(r.seconds)})"
        elif r.status == SKIPPED:
            line = f"SKIP {shown}" + (f": {r.message}" if r.message else "")
        else:
            line = f"FAIL {shown} ({_duration(r.seconds)})"
            if r.details:
                line += "\n" + "\n".join("    " + x if x else "" for x in
                                         r.details.splitlines())
        self.out.write(line + "\n")
        self.out.flush()

    def _summary(self, total: float) -> None:
        counts = {s: 0 for s in (PASSED, FAILED, SKIPPED)}
        for r in self.results:
            counts[FAILED if r.status == ERROR else r.status] += 1
        self.out.write(f"{counts[PASSED]} passed, {counts[FAILED]} failed, "
                       f"{counts[SKIPPED]} skipped in {total:.1f} s\n")
        self.out.flush()

    def _reports(self, total: float) -> None:
        from lang.testing import reports

        for path, write in ((self.opts.junit, reports.write_junit),
                            (self.opts.tap, reports.write_tap),
                            (self.opts.json, reports.write_json)):
            if path is None:
                continue
            try:
                if write is reports.write_junit:
                    write(self.results, path, total)
                else:
                    write(self.results, path)
            except OSError as e:
                sys.stderr.write(f"evt: error: cannot write {path}: {e.strerror or e}\n")


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _text(data: bytearray, dropped: int) -> str:
    text = data.decode("utf-8", "replace")
    if dropped:
        text += f"\n[{dropped} more bytes not kept]\n"
    return text


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
