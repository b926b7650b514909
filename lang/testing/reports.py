"""The reports of `evt test` (SPEC §13): JUnit XML, TAP version 14 and JSON.

Every report lists the tests in `ordered` order (by file, then declaration order), whatever
order they ended in, and is written atomically: into a temporary file beside the target,
then renamed over it, so a reader never sees half a report.

JUnit XML is the dialect GitLab, Jenkins and the GitHub JUnit actions read, valid against
the Jenkins xunit plugin's junit-10.xsd (vendored as tests/testing/data/junit.xsd). That
schema declares no `skipped` on `<testsuites>`, so the root carries name, tests, failures,
errors and time; each `<testsuite>` carries its `skipped` count."""

from __future__ import annotations

import json
import math
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from lang.files import write_atomically
from lang.testing.results import ERROR, FAILED, PASSED, SKIPPED, TestResult

__all__ = ["ordered", "write_json", "write_junit", "write_tap"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# What XML 1.0 cannot hold, even as a character reference (lone surrogates go first).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# What must not stand raw on a TAP line: line breaks, and the other control characters.
_NOT_TAP = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What YAML (and a consumer splitting lines) must not see raw inside a double-quoted scalar
# that json.dumps(ensure_ascii=False) leaves as it is.
_NOT_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def ordered(results: Iterable[TestResult]) -> list[TestResult]:
    """The report order: by (file index, test index), whatever order the tests ended in."""
    return sorted(results, key=lambda r: r.order)


def _visible(ch: str) -> str:
    """A character no report may hold raw, spelt out: \\n, \\x07, \\u2028."""
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _text(value: object) -> str:
    """`value` as text that encodes as UTF-8: a lone surrogate (an undecodable byte of a
    test's output, say) becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", str(value))


def _xml(value: object) -> str:
    """Text that XML 1.0 can hold: control characters spelt out as \\x1b and so on."""
    return _NOT_XML.sub(lambda m: _visible(m.group()), _text(value))


def _seconds(value: float) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else 0.0


def _time(value: float) -> str:
    """Seconds as JUnit readers (and junit-10.xsd's SUREFIRE_TIME) want them: 1.234."""
    return f"{_seconds(value):.3f}"


def _first_line(*texts: str) -> str:
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return ""


def _status(r: TestResult) -> str:
    """The result's status; one the reports do not know counts as an error, never a pass."""
    return r.status if r.status in (PASSED, FAILED, SKIPPED) else ERROR


# --- JUnit XML ------------------------------------------------------------------------------


def _counts(results: list[TestResult]) -> dict[str, str]:
    statuses = [_status(r) for r in results]
    return {
        "tests": str(len(results)),
        "failures": str(statuses.count(FAILED)),
        "errors": str(statuses.count(ERROR)),
        "skipped": str(statuses.count(SKIPPED)),
    }


def _testcase(r: TestResult) -> ET.Element:
    case = ET.Element(
        "testcase", {"classname": _xml(r.file), "name": _xml(r.name), "time": _time(r.seconds)}
    )
    status = _status(r)
    if status in (FAILED, ERROR):
        kind = "failure" if status == FAILED else "error"
        message = _first_line(r.message, r.details) or kind
        node = ET.SubElement(case, kind, {"message": _xml(message), "type": kind})
        node.text = _xml(r.details or r.message)
    elif status == SKIPPED:
        attrs = {"message": _xml(_first_line(r.message))} if r.message.strip() else {}
        ET.SubElement(case, "skipped", attrs)
    if r.stdout:
        ET.SubElement(case, "system-out").text = _xml(r.stdout)
    if r.stderr:
        ET.SubElement(case, "system-err").text = _xml(r.stderr)
    return case


def write_junit(
    results: list[TestResult], path: str, total_seconds: float, *, started: float | None = None
) -> None:
    """JUnit XML: `<testsuites>`, a `<testsuite>` per file (files and tests in report order),
    a `<testcase classname="FILE" name="NAME" time="S">` per test with its `<failure>`,
    `<error>` or `<skipped>` and its output in `<system-out>`/`<system-err>`. `started`
    (seconds since the epoch) is when the run began, by default now less `total_seconds`:
    each suite's timestamp, local time as Ant and Maven Surefire write it."""
    tests = ordered(results)
    by_file: dict[str, list[TestResult]] = {}
    for r in tests:
        by_file.setdefault(r.file, []).append(r)
    begun = started if started is not None else time.time() - _seconds(total_seconds)
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(begun))
    hostname = _xml(socket.gethostname() or "localhost")

    counts = _counts(tests)
    root = ET.Element("testsuites", {"name": "evt test"})
    root.attrib.update({k: counts[k] for k in ("tests", "failures", "errors")})
    root.set("time", _time(total_seconds))
    for file, cases in by_file.items():
        suite = ET.SubElement(root, "testsuite", {"name": _xml(file), **_counts(cases)})
        suite.attrib.update(
            {
                "time": _time(sum(_seconds(r.seconds) for r in cases)),
                "timestamp": timestamp,
                "hostname": hostname,
            }
        )
        suite.extend(_testcase(r) for r in cases)
    ET.indent(root, space="  ")
    # A carriage return left raw in text would reach a reader as a line feed (XML's end-of-line
    # handling); ElementTree already writes it as &#13; in attributes, and only text has one.
    body = ET.tostring(root, encoding="unicode").replace("\r", "&#13;")
    write_atomically(path, f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'.encode())


# --- TAP version 14 -------------------------------------------------------------------------


def _tap_escape(text: str) -> str:
    """A description or directive reason on one TAP line: `\\` and `#` escaped as TAP 14
    says (`\\\\`, `\\#`), line breaks and other control characters spelt out (\\n)."""
    text = _text(text).replace("\\", "\\\\").replace("#", "\\#")
    return _NOT_TAP.sub(lambda m: _visible(m.group()), text)


def _yaml_string(text: str) -> str:
    """A YAML double-quoted scalar: JSON's string syntax (valid YAML), with what YAML may
    not hold raw escaped as \\uXXXX too."""
    quoted = json.dumps(_text(text), ensure_ascii=False)
    return _NOT_YAML.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _yaml_block(r: TestResult, status: str) -> list[str]:
    fields = [
        ("message", _yaml_string(_first_line(r.message, r.details) or status)),
        ("severity", "fail" if status == FAILED else "error"),
        ("duration_ms", f"{_seconds(r.seconds) * 1000:.3f}"),
    ]
    if r.details.strip() and r.details.strip() != r.message.strip():
        fields.append(("details", _yaml_string(r.details)))
    for key, value in (("stdout", r.stdout), ("stderr", r.stderr)):
        if value:
            fields.append((key, _yaml_string(value)))
    return ["  ---", *(f"  {key}: {value}" for key, value in fields), "  ..."]


def write_tap(results: list[TestResult], path: str) -> None:
    """TAP version 14: the plan first, then `ok N - FILE::NAME`, `not ok N - FILE::NAME` with
    a YAML diagnostic block (message, severity fail or error, duration_ms, details and the
    test's output), `ok N - FILE::NAME # SKIP MESSAGE`."""
    tests = ordered(results)
    lines = ["TAP version 14", f"1..{len(tests)}"]
    for n, r in enumerate(tests, 1):
        status = _status(r)
        point = f"{n} - {_tap_escape(r.id)}"
        if status == PASSED:
            lines.append(f"ok {point}")
        elif status == SKIPPED:
            reason = _first_line(r.message)
            lines.append(f"ok {point} # SKIP" + (f" {_tap_escape(reason)}" if reason else ""))
        else:
            lines.append(f"not ok {point}")
            lines.extend(_yaml_block(r, status))
    write_atomically(path, ("\n".join(lines) + "\n").encode())


# --- JSON -----------------------------------------------------------------------------------


def write_json(results: list[TestResult], path: str) -> None:
    """A JSON list of `TestResult.as_json()` ({file, name, status, seconds, message, details,
    stdout, stderr}) in report order, UTF-8, indented by 2."""
    entries = []
    for r in ordered(results):
        entry = {k: _text(v) if isinstance(v, str) else v for k, v in r.as_json().items()}
        if not math.isfinite(entry["seconds"]):
            entry["seconds"] = 0.0
        entries.append(entry)
    text = json.dumps(entries, indent=2, ensure_ascii=False, allow_nan=False)
    write_atomically(path, (text + "\n").encode())
