"""How the suite runs (the shared helpers themselves are in tests/helpers/).

- `run_evt(source)` runs a script in this process, on the test's event loop, with stdout and
  stderr captured: use it inside `@pytest.mark.anyio` tests (next to a real peer from the
  `websockets` library, for instance). It returns Result(code, out, err).
- `run_cli([...])` runs `python -m lang ...` in a subprocess (the real command line: exit
  codes, signals, stdin).
- Every async test runs under a hard timeout (`anyio.fail_after` in run_evt, pytest-timeout
  around each test); no test sleeps to wait for something.
- Deterministic on a busy machine: a test waits on an event (an output line, a message, a
  flag in the script) under a generous hard limit, never for a short time in which something
  should have happened; no test asserts an upper bound on elapsed time (a lower bound only
  where a timer guarantees it). A new test passes five runs in a row beside two CPU-bound
  processes (`python3 -c 'while 1: pass'`) before it lands.
- In-process tests run on asyncio (EVT_TEST_LOOP=uvloop: on uvloop); `evt` in a subprocess
  runs on its default, uvloop (EVT_LOOP=asyncio: on asyncio). CI runs both combinations.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# The suite's connections go to 127.0.0.1 directly: a proxy set in the environment of the
# machine that runs it (a CI runner's, for its package downloads) would otherwise carry them
# (evt follows the proxy variables as the `websockets` library does). Tests of proxies set
# their own.
for _name in list(os.environ):
    if _name.lower() in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "socks_proxy",
                         "all_proxy", "no_proxy"):
        del os.environ[_name]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": os.environ.get("EVT_TEST_LOOP") == "uvloop"})
