"""lang/api.py tune_memory: on glibc, with lang/runtime/_malloc built, `evt run` sets malloc's
trim and mmap thresholds; a user's own MALLOC_*_ or GLIBC_TUNABLES setting is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ENV_FOR_CLI, ROOT

PROBE = "from lang.api import tune_memory; print(tune_memory())"


def _probe(**extra: str) -> str:
    env = {k: v for k, v in ENV_FOR_CLI.items()
           if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")}
    env.update(extra)
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_set_on_glibc_and_left_to_a_user_who_chose() -> None:
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        glibc = None
    try:
        import lang.runtime._malloc  # noqa: F401
    except ImportError:
        pytest.skip("lang/runtime/_malloc.c was not built (no compiler at install)")
    assert _probe() == ("True" if glibc else "False")
    assert _probe(MALLOC_TRIM_THRESHOLD_="1048576") == "False"
    assert _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576") == "False"
