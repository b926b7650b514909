"""Profile an evt echo server under load: python bench/profile_server.py [wsload args...]

Runs examples/echo_server.evt in this process under cProfile on a free port, drives it with
bench/wsload.py (default: 50 conns x 1,000 round trips of 32 B), and prints the top of the
profile by internal time (TOPN=70 in the environment for more than 28 rows). Used to find
what to optimise; see bench/RESULTS.md."""

from __future__ import annotations

import cProfile
import io
import pstats
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import anyio

    import stdlib
    from lang.check.checker import check
    from lang.interpreter.program import Runtime
    from lang.syntax.loader import load

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load_args = sys.argv[1:] or ["--conns", "50", "--msgs", "1000", "--warmup", "50"]
    decls, problems = load(str(ROOT / "examples" / "echo_server.evt"))
    builtins = stdlib.load()
    assert not problems and not check(decls, builtins)
    rt = Runtime(builtins=builtins, err=io.StringIO())
    inits = rt.install(decls, {"listen": f"127.0.0.1:{port}"})

    def drive() -> None:
        import time
        time.sleep(0.5)
        res = subprocess.run([sys.executable, str(ROOT / "bench" / "wsload.py"), "--url",
                              f"ws://127.0.0.1:{port}/", *load_args],
                             capture_output=True, text=True)
        print(res.stdout.strip().splitlines()[-1][:300])
        rt.request_exit(0)
        anyio.from_thread.run_sync(lambda: None, token=token[0])

    token: list = []

    async def run() -> None:
        token.append(anyio.lowlevel.current_token())
        threading.Thread(target=drive, daemon=True).start()
        await rt.main(inits, handle_signals=False)

    import anyio.lowlevel
    prof = cProfile.Profile()
    prof.enable()
    anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(int(__import__("os").environ.get("TOPN", "28")))


if __name__ == "__main__":
    main()
