"""A real `evt run` process (`evt_process`), its output watched as it is written and its
memory read from /proc."""

from __future__ import annotations

import codecs
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from helpers.run import ENV_FOR_CLI

T = 30  # seconds: the hard limit on a single wait
MiB = 1024 * 1024

# ---------------------------------------------------------------- the evt process


def enough_descriptors(needed: int) -> None:
    """Raise this process's open-file limit to `needed` (the hard limit allows it), or skip
    the test loudly when the hard limit is lower."""
    import pytest

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"SKIPPED LOUDLY: the hard open-file limit is {hard}; this test needs "
                    f"{needed} (raise it with `ulimit -Hn` as root)")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))



class Output:
    """A child's stdout or stderr, as it is written."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.text = ""
        self.eof = False
        self._changed = anyio.Event()

    def feed(self, chunk: str) -> None:
        self.text += chunk
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def end(self) -> None:
        self.eof = True
        self._changed.set()

    def lines(self, pattern: str) -> list[re.Match[str]]:
        return list(re.finditer(pattern, self.text, re.M))

    async def wait_for(self, pattern: str, timeout: float = T,
                       count: int = 1) -> list[re.Match[str]]:
        """Wait until `count` lines match `pattern` (a regex, multi-line mode)."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    found = self.lines(pattern)
                    if len(found) >= count:
                        return found
                    if self.eof:
                        break
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(f"{self.name}: {count} line(s) matching {pattern!r} did not come "
                             f"(found {len(self.lines(pattern))});\n{self.text[-3000:]}")

    async def wait_eof(self, timeout: float = T) -> None:
        with anyio.fail_after(timeout):
            while not self.eof:
                await self._changed.wait()


def _status_bytes(pid: int, key: str) -> int:
    """A `kB` figure of /proc/PID/status, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


@dataclass
class Child:
    proc: anyio.abc.Process
    out: Output = field(default_factory=lambda: Output("stdout"))
    err: Output = field(default_factory=lambda: Output("stderr"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return _status_bytes(self.pid, "VmRSS")

    def hwm(self) -> int:
        return _status_bytes(self.pid, "VmHWM")

    def reset_hwm(self) -> bool:
        """Reset the peak-RSS mark (Linux >= 4.0); False where that is not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def port(self, name: str = "srv") -> int:
        found = await self.err.wait_for(rf"^{name}: listening on ws://127\.0\.0\.1:(\d+)/$")
        return int(found[0][1])

    async def url(self, name: str = "srv", path: str = "/") -> str:
        return f"ws://127.0.0.1:{await self.port(name)}{path}"

    async def exited(self, timeout: float = T) -> int:
        """Wait for the process to end by itself; its exit code, once its output is all in."""
        with anyio.fail_after(timeout):
            code = await self.proc.wait()
        await self.out.wait_eof()
        await self.err.wait_eof()
        return code

    async def terminate(self, timeout: float = T) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds the process took to exit by itself."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await self.exited(timeout)
        return code, time.monotonic() - started

    def assert_clean_stderr(self) -> None:
        for bad in ("Traceback", "internal error", "Task was destroyed", "never awaited",
                    "Exception"):
            assert bad not in self.err.text, self.err.text[-3000:]


async def _pump(stream: anyio.abc.ByteReceiveStream, output: Output) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        async for chunk in stream:
            output.feed(decoder.decode(chunk))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        output.end()


@asynccontextmanager
async def evt_process(tmp_path: Path, source: str, *options: str,
                      name: str = "serve.evt", args: tuple[str, ...] = ()
                      ) -> AsyncIterator[Child]:
    """`python -m lang run [OPTIONS] FILE [ARGS]` with `source` as FILE, its output watched. A
    process still running when the block is left is killed (a test that expects it to end
    by itself says so with `terminate` or `exited`)."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    proc = await anyio.open_process([sys.executable, "-m", "lang", "run", *options, str(script),
                                     *args], stdin=subprocess.DEVNULL, env=ENV_FOR_CLI)
    child = Child(proc)
    assert proc.stdout is not None and proc.stderr is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pump, proc.stdout, child.out)
        tg.start_soon(_pump, proc.stderr, child.err)
        try:
            yield child
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                with anyio.move_on_after(T):
                    await proc.wait()


@dataclass
class Samples:
    """RSS of a process while something happened: samples of VmRSS, and its VmHWM (the
    kernel's peak mark, reset at the start) where the kernel lets us reset it."""

    values: list[int] = field(default_factory=list)
    hwm: int = 0

    @property
    def peak(self) -> int:
        return max([*self.values, self.hwm])

    def growth(self, baseline: int) -> int:
        return self.peak - baseline

    def describe(self, baseline: int) -> str:
        hwm = mib(self.hwm - baseline) if self.hwm else "n/a"
        sampled = mib(max(self.values, default=baseline) - baseline)
        return (f"{mib(self.growth(baseline))} (VmHWM {hwm}, sampled {sampled} over "
                f"{len(self.values)} samples) from {mib(baseline)}")


@asynccontextmanager
async def sampling_rss(child: Child, interval: float = 0.005) -> AsyncIterator[Samples]:
    """Sample the child's VmRSS every `interval` seconds while the block runs, and read its
    peak (VmHWM) at the end."""
    samples = Samples()
    hwm_reset = child.reset_hwm()

    async def run() -> None:
        while True:
            try:
                samples.values.append(child.rss())
            except (OSError, KeyError):
                return  # the process is gone
            await anyio.sleep(interval)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        yield samples
        tg.cancel_scope.cancel()
    if hwm_reset:
        try:
            samples.hwm = child.hwm()
        except (OSError, KeyError):
            pass


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


