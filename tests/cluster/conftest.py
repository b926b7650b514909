"""The cluster tests' Redis: a real redis-server of their own, on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.redis import SERVER, Redis


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    if SERVER is None:
        pytest.skip("SKIPPED LOUDLY: redis-server is not installed (apt-get install "
                    "redis-server); the cluster tests need a real Redis")
    r = Redis(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.kill()
