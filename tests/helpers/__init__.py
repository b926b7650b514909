"""Helpers the test files share (`from helpers import ...`: tests/ is on sys.path through
tests/conftest.py)."""

from helpers.frames import client_frame, frame_head, free_port, mask
from helpers.run import ENV_FOR_CLI, ROOT, Result, default_signals, run_cli, run_evt, write

__all__ = ["ENV_FOR_CLI", "ROOT", "Result", "client_frame", "default_signals", "frame_head", "free_port", "mask",
           "run_cli", "run_evt", "write"]
