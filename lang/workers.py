"""`evt run --workers N FILE` (SPEC §16): N processes of one script under one supervisor.

Rules of this module:
- The script is loaded and checked here, once, before any worker starts, so a bad script
  or a bad option is reported once (exit 3 or 2), not N times.
- Each worker is `python -m lang run` with the same options, minus --workers, and with
  EVT_WORKERS=N and EVT_WORKER=i in its environment: servers then listen with SO_REUSEPORT
  and `worker()` gives i. Options that name a file get `.i` before the extension and
  --metrics-listen gets port + i, so workers never write over each other.
- Every worker runs in a process group of its own: a terminal's Ctrl-C reaches only this
  process, which forwards each SIGINT, SIGTERM and SIGHUP to every worker exactly once (a
  second signal cuts a worker's shutdown short, so a signal must not arrive twice). A third
  signal kills the workers. On Linux a worker also gets SIGTERM if this process dies.
- Standard input goes to worker 0 (through a pipe this process fills) when the script has
  an `on input` handler; the other workers, and every worker of a script without one, read
  /dev/null.
- Output: each worker's lines reach this process's stdout and stderr whole, prefixed with
  `[i] `; a last line without a newline gets one. Nothing is lost: a worker's pipes are read
  to their end before it is counted as ended. Where stdout and stderr are the same file (a
  terminal, `2>&1`), a worker writes both into one pipe, so its lines keep their order.
  When this process's stdout (or stderr) is closed, so are the workers' pipes to it.
- A worker that ends does not stop the others; the run ends when the last one has, with the
  worst exit code (the highest; a worker killed by signal n counts as 128 + n).
- This process runs no event loop: one selector over the workers' pipes and the signals'
  wakeup pipe, and one thread to copy standard input.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from lang import ast as A
from lang.runtime.core import shutdown_signals, signal_exit_code

MAX_LINE = 1 << 20  # bytes of a line kept whole; a longer one is passed on in pieces
READ = 1 << 16

# options of `evt run` whose name is not `--` + the dest with dashes
_OPTION_NAMES = {"sets": "--set", "thresholds": "--threshold"}
_NOT_OPTIONS = {"command", "file", "args", "workers"}
_FILE_OPTIONS = ("record", "metrics_out", "report_html")  # a file per worker


class Front(Protocol):
    """What this module uses of lang.cli (which imports this module, so it passes itself
    in rather than being imported back: the layers have no cycles)."""

    def load_checked(self, path: str, builtins: dict[str, Any]
                     ) -> tuple[list[A.Node] | None, int]: ...
    def overrides_for(self, sets: list[str], decls: list[A.Node]) -> dict[str, Any]: ...
    def cli_thresholds(self, texts: list[str], decls: list[A.Node], builtins: dict[str, Any]
                       ) -> tuple[list[A.Node] | None, int]: ...
    def host_port(self, text: str) -> tuple[str, int]: ...
    def cmd_run(self, opts: argparse.Namespace) -> int: ...


def cmd_workers(opts: argparse.Namespace, front: Front) -> int:
    """`evt run --workers N ...`: its exit code (`front` is lang.cli)."""
    n = opts.workers
    if n < 1:
        _say(f"evt: error: --workers takes a number of processes, at least 1 (got {n})")
        return 2
    if n == 1:  # as without the option; worker() is 0
        os.environ.pop("EVT_WORKERS", None)
        os.environ["EVT_WORKER"] = "0"
        return front.cmd_run(argparse.Namespace(**{**vars(opts), "workers": None}))
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "setpgid"):
        _say("evt: error: --workers needs a system with SO_REUSEPORT (Linux, a BSD, macOS)")
        return 2
    decls, code = _prepare(opts, front)
    if decls is None:
        return code
    for warning in warnings_for(decls, n):
        _say(f"evt: warning: {warning}")
    return Supervisor(opts, n, relay_stdin=_reads_input(decls)).run()


def _prepare(opts: argparse.Namespace, front: Front) -> tuple[list[A.Node] | None, int]:
    """Everything `evt run` would refuse before running, judged once: (decls, 0) or (None,
    the exit code) once the problems are printed."""
    from lang import api

    builtins = api.builtins()
    decls, code = front.load_checked(opts.file, builtins)
    if decls is None:
        return None, code
    try:
        front.overrides_for(opts.sets, decls)
    except ValueError as e:
        _say(f"evt: error: {e}")
        return None, 2
    extra, code = front.cli_thresholds(opts.thresholds, decls, builtins)
    if extra is None:
        return None, code
    if opts.metrics_listen is not None:
        try:
            _, port = front.host_port(opts.metrics_listen)
        except ValueError as e:
            _say(f"evt: error: --metrics-listen: {e}")
            return None, 2
        if port and port + opts.workers - 1 > 65535:
            _say(f"evt: error: --metrics-listen: worker {opts.workers - 1} would listen on "
                 f"port {port + opts.workers - 1}, past 65535")
            return None, 2
    return decls, 0


# ---------------------------------------------------------------- what the script holds


def nodes(decls: list[A.Node]) -> list[Any]:
    """Every node of the program (declarations, statements, expressions)."""
    out: list[Any] = []
    stack: list[Any] = list(decls)
    while stack:
        node = stack.pop()
        out.append(node)
        for name in A.node_fields(node):
            value = getattr(node, name, None)
            if isinstance(value, A.Node):
                stack.append(value)
            elif isinstance(value, tuple):
                stack.extend(v for v in value if isinstance(v, A.Node))
    return out


def warnings_for(decls: list[A.Node], n: int) -> list[str]:
    """What --workers N would do that the script's author may not expect."""
    from lang.check import NOT_LITERAL, literal_value

    every = nodes(decls)
    servers = [d for d in decls if isinstance(d, A.Server)]
    out: list[str] = []
    # (`Cluster` is matched by name: the node may not exist in this version of the grammar)
    if servers and any(isinstance(x, A.Broadcast) for x in every) and \
            not any(type(x).__name__ == "Cluster" for x in every):
        out.append(f"--workers {n} without a cluster: a broadcast reaches only the peers of "
                   "its own worker (declare cluster { url = \"redis://...\" } to reach them "
                   "all)")
    for s in servers:
        listen = [literal_value(i.value) for i in s.items if i.key == "listen"]
        if listen and listen[0] is not NOT_LITERAL and str(listen[0]).endswith(":0"):
            out.append(f"--workers {n}: server {s.name} listens on port 0, so each worker "
                       "gets a port of its own; give it a fixed port to share one")
    return out


def _reads_input(decls: list[A.Node]) -> bool:
    return any(isinstance(x, A.Event) and x.kind in ("input", "input end")
               for x in nodes(decls))


# ---------------------------------------------------------------- the workers' command line


def numbered(path: str, index: int) -> str:
    """A per-worker file name: `run.har` -> `run.1.har`, `out` -> `out.1`."""
    root, ext = os.path.splitext(path)
    return f"{root}.{index}{ext}"


def worker_argv(opts: argparse.Namespace, index: int) -> list[str]:
    """`run [OPTIONS] FILE ARGS...` for worker `index`: the options of `opts` but --workers,
    with its own files and metrics port."""
    argv = ["run"]
    for dest, value in vars(opts).items():
        if dest in _NOT_OPTIONS or value is None or value is False:
            continue
        name = _OPTION_NAMES.get(dest, "--" + dest.replace("_", "-"))
        if dest in _FILE_OPTIONS:
            value = numbered(value, index)
        elif dest == "metrics_listen":
            host, _, port = value.rpartition(":")
            value = f"{host}:{int(port) + index if int(port) else 0}"
        if value is True:
            argv.append(name)
        elif isinstance(value, list):
            argv.extend(f"{name}={v}" for v in value)
        else:
            argv.append(f"{name}={value}")
    file = opts.file
    argv.append(f"./{file}" if file.startswith("-") else file)
    argv.extend(opts.args)
    return argv


# ---------------------------------------------------------------- the supervisor


@dataclass
class Pipe:
    """One pipe from a worker: bytes in, whole prefixed lines out."""

    fd: int
    prefix: bytes
    target: int  # 1 or 2: this process's stdout or stderr
    pending: bytearray = field(default_factory=bytearray)

    def lines(self, chunk: bytes) -> bytes:
        """The whole lines of what came so far, each prefixed; at EOF (chunk b"") all."""
        self.pending += chunk
        end = len(self.pending) if not chunk else self.pending.rfind(b"\n") + 1
        if chunk and end == 0 and len(self.pending) >= MAX_LINE:
            end = len(self.pending)
        if end == 0:
            return b""
        body = bytes(self.pending[:end])
        del self.pending[:end]
        parts = body.split(b"\n")
        if parts[-1] == b"":
            parts.pop()
        return b"".join(self.prefix + p + b"\n" for p in parts)


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    streams: list[Pipe]
    code: int | None = None


class Supervisor:
    def __init__(self, opts: argparse.Namespace, n: int, relay_stdin: bool) -> None:
        self.opts = opts
        self.n = n
        self.relay_stdin = relay_stdin
        self.workers: list[_Worker] = []
        self.sel = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.forwarded = 0  # signals passed on so far
        self.closed: set[int] = set()  # this process's stdout/stderr once gone
        self.shared = _same_file(1, 2)
        self.relay = -1  # the pipe to worker 0's stdin, once it has one

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        old = {s: signal.signal(s, self._on_signal) for s in shutdown_signals()}
        # (a worker's end wakes the loop too: a worker may end after its pipes did)
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _ignore)
        try:
            failed = self._start_all()
            if self.relay >= 0:  # (a thread only now: the workers start with a preexec_fn)
                threading.Thread(target=_copy_stdin, args=(self.relay,), daemon=True,
                                 name="evt stdin to worker 0").start()
            self._forward()
            while any(w.code is None for w in self.workers):
                self._step()
        except BaseException:  # a bug of ours: leave no worker behind
            for w in self.workers:
                if w.code is None:
                    w.proc.kill()
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)
        return 1 if failed else max(w.code or 0 for w in self.workers)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # handled in the loop (woken by the wakeup fd)

    def _start_all(self) -> bool:
        """Start the workers; False, or True when one could not start (those started are
        then stopped as by SIGTERM)."""
        env = dict(os.environ, EVT_WORKERS=str(self.n))
        setup = _child_setup(os.getpid())
        for i in range(self.n):
            try:
                self.workers.append(self._start(i, {**env, "EVT_WORKER": str(i)}, setup))
            except OSError as e:
                self._say(f"evt: error: cannot start worker {i}: {e.strerror or e}")
                self.signals.append(signal.SIGTERM)
                return True
        return False

    def _start(self, i: int, env: dict[str, str], setup: Callable[[], None]) -> _Worker:
        made: list[int] = []  # every fd made here, to close on failure
        theirs: list[int] = []  # the worker's ends, closed here once it has them
        try:
            out_r, out_w = _pipe(made)
            err_r, err_w = (out_r, out_w) if self.shared else _pipe(made)
            theirs += {out_w, err_w}
            stdin, relay = subprocess.DEVNULL, -1
            if i == 0 and self.relay_stdin:
                stdin, relay = _pipe(made)
                theirs.append(stdin)
            argv = [sys.executable, "-m", "lang", *worker_argv(self.opts, i)]
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out_w, stderr=err_w, env=env,
                                    preexec_fn=setup)
        except OSError:
            for fd in made:
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        self.relay = relay if relay >= 0 else self.relay
        prefix = f"[{i}] ".encode()
        streams = [Pipe(out_r, prefix, 1)]
        if not self.shared:
            streams.append(Pipe(err_r, prefix, 2))
        worker = _Worker(i, proc, streams)
        for s in streams:
            self.sel.register(s.fd, selectors.EVENT_READ, (worker, s))
        return worker

    def _step(self) -> None:
        for key, _ in self.sel.select():
            if key.data is None:  # the signals' wakeup pipe
                try:
                    os.read(key.fd, 512)
                except BlockingIOError:
                    pass
                continue
            worker, stream = key.data
            if stream not in worker.streams:  # dropped in this round
                continue
            try:
                chunk = os.read(stream.fd, READ)
            except OSError:
                chunk = b""
            self._write(stream.target, stream.lines(chunk))
            if not chunk:
                self._drop(worker, stream)
        self._forward()
        self._reap()

    def _drop(self, worker: _Worker, stream: Pipe) -> None:
        self.sel.unregister(stream.fd)
        os.close(stream.fd)
        worker.streams.remove(stream)

    def _reap(self) -> None:
        """The exit codes of the workers whose output is all in and that have ended."""
        for worker in self.workers:
            if worker.code is not None or worker.streams:
                continue
            raw = worker.proc.poll()
            if raw is None:
                continue
            worker.code = signal_exit_code(-raw) if raw < 0 else raw
            running = sum(1 for w in self.workers if w.code is None)
            if worker.code and running and not self.forwarded:
                how = (f"was killed by {signal.Signals(-raw).name}" if raw < 0
                       else f"ended with exit code {raw}")
                self._say(f"evt: worker {worker.index} {how}; {running} other"
                          f"{'s' if running != 1 else ''} still running")

    def _forward(self) -> None:
        """Pass each signal received on to every worker still running; the third one
        kills them."""
        while self.signals:
            signum = self.signals.pop(0)
            self.forwarded += 1
            if self.forwarded >= 3:
                signum = signal.SIGKILL
            for w in self.workers:
                if w.code is None:
                    try:
                        w.proc.send_signal(signum)
                    except OSError:  # already gone
                        pass

    def _write(self, target: int, data: bytes) -> None:
        if not data or target in self.closed:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(target, view):]
        except OSError:
            # the reader went away (EPIPE): the workers' pipes to it are closed too, so each
            # worker finds its own stdout (or stderr) closed, as `evt run` alone would
            self.closed.add(target)
            for w in self.workers:
                for stream in [s for s in w.streams if s.target == target]:
                    self._drop(w, stream)

    def _say(self, text: str) -> None:
        self._write(2, (text + "\n").encode("utf-8", "backslashreplace"))


def _ignore(signum: int, frame: Any) -> None:
    pass


def _pipe(made: list[int]) -> tuple[int, int]:
    r, w = os.pipe()
    made += (r, w)
    return r, w


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _copy_stdin(dst: int) -> None:
    """Standard input to worker 0, until its end or until worker 0 stops reading (os.read:
    see lang.runtime.stdio on why not sys.stdin)."""
    try:
        while data := os.read(0, READ):
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]
    except OSError:
        pass
    finally:
        os.close(dst)


def _child_setup(parent: int) -> Callable[[], None]:
    """The workers' preexec_fn: a process group of their own (the terminal's signals reach
    only the supervisor, which forwards them once), and on Linux SIGTERM when the
    supervisor dies, so no worker outlives it."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return setup
