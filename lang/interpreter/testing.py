"""A program run as one test of `evt test` (SPEC §13): the chosen `test` body runs as a
handler of its own after `on project start`, and its end ends the program. A mixin of the
Runtime, as stdin.py is.

What makes a test fail is collected here as it happens (an assertion, a runtime error, an
unhandled websocket error, a breached threshold): the runner shows those lines under the
FAIL line and in the reports, apart from the rest of standard error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lang import ast as A
from lang.errors import EvtRuntimeError
from lang.runtime.core import SkipRequest

TEST_KEY = ("test",)
MAX_FAILURES = 10  # the diagnostics a failed test keeps (all of them go to its stderr)


@dataclass
class TestRun:
    """What the runner asked for and what came of it. `name` None: a file with no `test`
    declaration, run as `evt run` would run it."""

    __test__ = False  # not a pytest class
    name: str | None
    what: str = ""
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None  # the skip message, once `skip` ran in the body
    more_failures: int = 0  # past the first MAX_FAILURES


def test_decls(decls: list[A.Node], name: str | None) -> list[A.Node]:
    """The program of one test: every declaration but the `test`s, and the chosen test's body
    as the handler of an event of its own. `evt run` (name None) drops every test."""
    out: list[A.Node] = []
    for d in decls:
        if not isinstance(d, A.Test):
            out.append(d)
        elif d.name == name:
            event = A.Event("test", None, None, None, None, span=d.span)
            out.append(A.Handler(event, d.body, span=d.span))
    return out


def test_names(decls: list[A.Node], path: str) -> list[str]:
    """The tests declared in the file `path` itself (not in files it imports), in order."""
    return [d.name for d in decls if isinstance(d, A.Test) and d.span.file == path]


class TestMode:
    """(a mixin of the Runtime: it uses handlers, lifecycle, dispatch, diag, report and
    request_exit)"""

    __test__ = False  # not a pytest class
    test: TestRun | None = None
    handlers: dict[tuple, list[Any]]
    lifecycle: Any
    dispatch: Any
    report: Any
    request_exit: Any

    def start_test(self) -> None:
        """After `on project start` has been posted: the test's body, then the end."""
        hs = self.handlers.get(TEST_KEY)
        if self.test is None or not hs:
            return
        self.test.what = hs[0].what = f'test "{self.test.name}"'

        async def body() -> None:
            await self.dispatch(TEST_KEY)
            self.request_exit(None)

        self.lifecycle.post(body)

    def note_failure(self, text: str) -> None:
        test = self.test
        if test is None:
            return
        if len(test.failures) < MAX_FAILURES:
            test.failures.append(text.rstrip("\n"))
        else:  # a loop that fails at each turn: the first ones say it
            test.more_failures += 1

    def skip_requested(self, e: SkipRequest, what: str, span: A.Span) -> None:
        if self.test is not None and self.test.name is not None and what == self.test.what:
            if self.test.skipped is None:
                self.test.skipped = e.message
            self.request_exit(None)
            return
        self.report(EvtRuntimeError("'skip' works only in a test's body (or a function it "
                                    "calls)", e.span), what, span)
