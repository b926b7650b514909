"""What one test came to: the record the runner fills in and the reports read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass
class TestResult:
    """One test of one file.

    status: "passed", "failed" (an assertion, a runtime error, an unhandled websocket
    error or a breached threshold), "skipped", or "error" (the file does not check, the
    test ran past --timeout, or its process ended without a result). `message` is one line
    (the first diagnostic, the skip message, "timed out after 60 s"); `details` every
    diagnostic, as printed under a FAIL line. `order` is (the file's index, the test's
    index in the file): reports sort by it, whatever order the tests ended in."""

    __test__ = False  # not a pytest class

    file: str
    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    details: str = ""
    stdout: str = ""
    stderr: str = ""
    order: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """`file::name`, as -k matches it and the output lines show it."""
        return f"{self.file}::{self.name}"

    def as_json(self) -> dict[str, Any]:
        """SPEC §13's JSON report entry: {file, name, status, seconds, message, stdout,
        stderr} (plus details)."""
        d = asdict(self)
        d.pop("order")
        d.pop("extra")
        d["seconds"] = round(self.seconds, 3)
        return d
