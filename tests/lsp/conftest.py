"""Fixtures of the LSP tests: a project of two files (tests/lsp/lsp_texts.py) in a fresh
directory, and `evt lsp` started and initialized on it (killed after the test, whatever
happened)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lsp_texts import LIB, MAIN
from lspclient import Client


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "lib.evt").write_text(LIB, encoding="utf-8")
    (tmp_path / "main.evt").write_text(MAIN, encoding="utf-8")
    return tmp_path


@pytest.fixture
def client(project: Path) -> Iterator[Client]:
    c = Client(cwd=project)
    try:
        c.initialize(project)
        yield c
    finally:
        c.kill()
