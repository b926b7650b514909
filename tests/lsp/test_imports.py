"""`evt lsp` reads the syntax, check and stdlib-registry layers only: the runtime, the event
loop of evt's and the network stack are never imported (the server starts fast and cannot
open a socket of a script's)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ENV_FOR_CLI, ROOT

FORBIDDEN = ("anyio", "wsproto", "uvloop", "lang.runtime", "lang.interpreter", "lang.endpoints",
             "lang.compile", "lang.metrics.live", "lang.recording", "lang.repl",
             "prompt_toolkit")
ALLOWED_WIRE = {"lang.wire", "lang.wire.codes"}  # close codes: a table the checker reads


def test_the_server_imports_no_runtime_and_no_network() -> None:
    code = ("import json, sys; import lang.cli; from lang.lsp.server import build_server; "
            "build_server(); print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=ENV_FOR_CLI)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)
    assert "lang.lsp.server" in modules and "lang.check" in modules
    bad = [m for m in modules if m.startswith(FORBIDDEN)
           or (m.startswith("lang.wire") and m not in ALLOWED_WIRE)]
    assert bad == []
