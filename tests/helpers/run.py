"""Running evt from a test: in this process (`run_evt`) or as the real command line
(`run_cli`); see tests/conftest.py for the rules every test keeps."""


from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[2]  # the checkout


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


async def run_evt(source: str, *, tmp_path: Path | None = None, name: str = "test.evt",
                  args: tuple[str, ...] = (), sets: dict[str, Any] | None = None,
                  timeout: float = 30, verbose: bool = False, trace: bool = False) -> Result:
    """Parse, check and run a script in-process. Check errors give code 3 and the
    diagnostics in err, as the CLI would."""
    from lang import api

    source = textwrap.dedent(source)
    directory = tmp_path if tmp_path is not None else Path(os.environ.get("TMPDIR", "/tmp"))
    path = directory / name
    path.write_text(source, encoding="utf-8")
    builtins = api.builtins()
    checked = api.load_and_check(str(path), builtins)
    if checked.usage is not None:
        raise checked.usage
    if checked.too_deep:
        raise RecursionError(f"{path} is nested too deeply to check")
    if checked.syntax is not None:
        return Result(3, "", checked.syntax.format())
    if checked.problems:
        return Result(3, "", "".join(d.format() for d in checked.problems))
    assert checked.decls is not None
    out, err = io.StringIO(), io.StringIO()
    rt = api.make_runtime(builtins, args=list(args), out=out, err=err, verbose=verbose,
                          trace=trace)
    inits = api.install(rt, checked.decls, sets)
    with anyio.fail_after(timeout):
        code = await rt.main(inits, handle_signals=False)
    return Result(code, out.getvalue(), err.getvalue())


# the environment for `python -m lang` in a subprocess: this checkout's packages first
ENV_FOR_CLI = dict(os.environ)
ENV_FOR_CLI["PYTHONPATH"] = str(ROOT) + os.pathsep + ENV_FOR_CLI.get("PYTHONPATH", "")


def default_signals() -> None:
    """A `preexec_fn` for a child that must take signals as from a terminal: SIGINT and
    SIGHUP at their defaults even when the runner itself was started with them ignored
    (under `nohup`, or as a background job of a non-interactive shell), which the child
    would otherwise inherit, and evt rightly keeps."""
    for name in ("SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def run_cli(args: list[str], *, input: str | None = None, timeout: float = 60,
            cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """`python -m lang ARGS` in a subprocess."""
    full_env = dict(ENV_FOR_CLI)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "lang", *args], input=input,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=full_env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write(tmp_path: Path, source: str, name: str = "test.evt") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path
