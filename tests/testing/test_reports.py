"""The three reports of `evt test` (SPEC §13), read back by what reads them in CI.

- JUnit XML: parsed by junitparser (the library EnricoMi/publish-unit-test-result-action
  uses) and validated against the Jenkins xunit plugin's junit-10.xsd (vendored in data/).
- TAP: parsed by tap.py, and by `parse_tap14` below, a strict check written from the TAP 14
  specification (testanything.org/tap-version-14-specification.html), because tap.py is a
  TAP 13 parser: it takes the `TAP version 14` line and the YAML blocks, but not TAP 14's
  escapes (`\\#`, `\\\\`), and it keeps the " - " before a description.
- JSON: the list of entries, exactly their keys, in report order.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import xmlschema
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import Error, Failure, JUnitXml, Skipped
from tap.parser import Parser

from lang import files
from lang.testing.reports import ordered, write_json, write_junit, write_tap
from lang.testing.results import TestResult

XSD = Path(__file__).parent / "data" / "junit.xsd"
NASTY = 'x < 1 & y > 2 "q" \'a\' ]]> \x07bell \x1b[31mred\x1b[0m é ü 漢 \U0001f600 \ud83d'
DETAILS = NASTY + "\n  at zeta_test.evt:3:5\n  ]]> <![CDATA[ & &amp;\r\nlone \udcff surrogate"


@cache
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def sample() -> list[TestResult]:
    """Two files, given out of order: zeta_test.evt is file 0, alpha_test.evt file 1."""
    return [
        TestResult("alpha_test.evt", "later", "skipped", 0.0, "no # feature \\ yet", order=(1, 1)),
        TestResult("zeta_test.evt", "breaks", "failed", 2.0, NASTY, DETAILS,
                   stdout="printed\n", stderr="warned\x00\n", order=(0, 1)),
        TestResult("alpha_test.evt", "times out", "error", 60.0, "timed out after 60 s",
                   "timed out after 60 s", order=(1, 2)),
        TestResult("zeta_test.evt", "works", "passed", 0.0123, stdout="ok out", order=(0, 0)),
        TestResult("alpha_test.evt", "has # and \\ and\nnewline", "passed", 1.5, order=(1, 0)),
    ]


def xml_text(s: str) -> str:
    """What the JUnit report should hold for `s`: lone surrogates as U+FFFD, what XML 1.0
    cannot hold spelt out (\\x07)."""
    s = re.sub("[\ud800-\udfff]", "\ufffd", s)
    return re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", lambda m: f"\\x{ord(m[0]):02x}"
                  if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", s)


def tap_text(s: str) -> str:
    """What a TAP 14 harness should read back for `s` on a test point line."""
    s = re.sub("[\ud800-\udfff]", "\ufffd", s)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return re.sub("[\x00-\x1f\x7f-\x9f\u2028\u2029]", lambda m: named.get(m[0]) or (
        f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}"), s)


def test_ordered_by_file_then_test_index() -> None:
    assert [r.id for r in ordered(sample())] == [
        "zeta_test.evt::works", "zeta_test.evt::breaks", "alpha_test.evt::has # and \\ and\nnewline",
        "alpha_test.evt::later", "alpha_test.evt::times out"]


# --- JUnit ----------------------------------------------------------------------------------


def test_junit_read_by_junitparser(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(sample(), str(path), 63.5)
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')
    xml = JUnitXml.fromfile(str(path))
    assert (xml.name, xml.tests, xml.failures, xml.errors, xml.time) == ("evt test", 5, 1, 1, 63.5)
    suites = list(xml)
    assert [s.name for s in suites] == ["zeta_test.evt", "alpha_test.evt"]
    counts = [(s.tests, s.failures, s.errors, s.skipped) for s in suites]
    assert counts == [(2, 1, 0, 0), (3, 0, 1, 1)]
    assert [s.time for s in suites] == [2.012, 61.5]
    assert all(s.hostname and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", s.timestamp)
               for s in suites)

    cases = [c for s in suites for c in s]
    assert [(c.classname, c.name, c.time) for c in cases] == [
        ("zeta_test.evt", "works", 0.012), ("zeta_test.evt", "breaks", 2.0),
        ("alpha_test.evt", "has # and \\ and\nnewline", 1.5),
        ("alpha_test.evt", "later", 0.0), ("alpha_test.evt", "times out", 60.0)]
    works, breaks, hashes, later, timeout = cases
    assert works.is_passed and works.result == [] and works.system_out == "ok out"
    assert hashes.is_passed and hashes.system_out is None

    [failure] = breaks.result
    assert isinstance(failure, Failure)
    assert (failure.type, failure.message) == ("failure", xml_text(NASTY))
    assert failure.text == xml_text(DETAILS)
    assert "\\x07bell \\x1b[31m" in failure.text and "\r\n" in failure.text  # kept, CR and all
    assert "]]> <![CDATA[ & &amp;" in failure.text and "lone \ufffd surrogate" in failure.text
    assert (breaks.system_out, breaks.system_err) == ("printed\n", "warned\\x00\n")

    [skipped] = later.result
    assert isinstance(skipped, Skipped) and later.is_skipped
    assert skipped.message == "no # feature \\ yet"
    [error] = timeout.result
    assert isinstance(error, Error)
    assert (error.type, error.message, error.text) == ("error", "timed out after 60 s",
                                                       "timed out after 60 s")


def test_junit_valid_against_the_xsd(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(sample(), str(path), 63.5)
    schema().validate(str(path))
    write_junit([], str(path), 0.0)
    schema().validate(str(path))
    assert ET.parse(path).getroot().attrib == {
        "name": "evt test", "tests": "0", "failures": "0", "errors": "0", "time": "0.000"}
    # The schema does reject what it does not declare (so the checks above mean something).
    bad = path.read_text().replace('<testsuites name="evt test"', '<testsuites bogus="1"')
    assert not schema().is_valid(bad)


def test_junit_holds_every_character(tmp_path: Path) -> None:
    text = "".join(map(chr, range(0x20))) + "\x7f\x85\u2028\ufffe\uffff\ud800\udfff \U0001f600"
    r = TestResult(text, text, "failed", float("nan"), text, text, text, text)
    path = tmp_path / "junit.xml"
    write_junit([r], str(path), float("inf"))
    schema().validate(str(path))
    case = ET.parse(path).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == case.get("classname") == xml_text(text)
    assert case.get("time") == "0.000"
    assert case.findtext("failure") == case.findtext("system-out") == xml_text(text)
    assert xml_text(text).startswith("\\x00\\x01") and "\\x08\t\n\\x0b\\x0c\r" in xml_text(text)


# --- TAP ------------------------------------------------------------------------------------


def _unescape(s: str) -> tuple[str, str | None]:
    """A TAP 14 test point's text after `N - `: (description, directive), with `\\\\` and
    `\\#` read as escapes. Strict: an unescaped `#` must be the directive delimiter."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 2] in ("\\", "#"):
            out.append(s[i + 1])
            i += 2
            continue
        if s[i] == "#":
            assert i > 0 and s[i - 1] == " " and s[i + 1 : i + 2] == " ", f"bare # in {s!r}"
            return "".join(out).rstrip(), s[i + 2 :]
        out.append(s[i])
        i += 1
    return "".join(out).rstrip(), None


def parse_tap14(data: bytes) -> list[dict[str, Any]]:
    """A strict reading of a TAP 14 document as our reports write it: version line, plan,
    then only test points numbered 1..N, each `not ok` followed by a 2-space YAML block."""
    text = data.decode("utf-8")  # strict: the stream is UTF-8
    assert text.endswith("\n") and "\r" not in text
    lines = text[:-1].split("\n")
    assert not [ln for ln in lines if re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", ln)]
    assert lines[0] == "TAP version 14"
    plan = re.fullmatch(r"1\.\.(\d+)", lines[1])
    assert plan, lines[1]
    points: list[dict[str, Any]] = []
    i = 2
    while i < len(lines):
        m = re.fullmatch(r"(not ok|ok) (\d+) - (.*)", lines[i])
        assert m, f"not a test point: {lines[i]!r}"
        assert int(m[2]) == len(points) + 1
        description, directive = _unescape(m[3])
        point: dict[str, Any] = {"ok": m[1] == "ok", "description": description,
                                 "skip": None, "yaml": None}
        if directive is not None:
            d = re.fullmatch(r"SKIP(?: (.+))?", directive)
            assert d, f"not a directive we write: {directive!r}"
            point["skip"] = _unescape(d[1] or "")[0]
            assert _unescape(d[1] or "")[1] is None
        i += 1
        if lines[i : i + 1] == ["  ---"]:
            end = lines.index("  ...", i)
            block = lines[i + 1 : end]
            assert all(ln.startswith("  ") and not ln.startswith("   ") for ln in block)
            doc = yaml.safe_load("\n".join(ln[2:] for ln in block))
            # Each value reads the same as YAML and as JSON (a JSON string, a number, a word).
            by_line = {}
            for ln in block:
                key, _, value = ln[2:].partition(": ")
                by_line[key] = value if re.fullmatch("[a-z]+", value) else json.loads(value)
            assert doc == by_line
            point["yaml"] = doc
            i = end + 1
        points.append(point)
    assert len(points) == int(plan[1])
    return points


def test_tap_is_strict_tap14(tmp_path: Path) -> None:
    path = tmp_path / "report.tap"
    write_tap(sample(), str(path))
    points = parse_tap14(path.read_bytes())
    assert [(p["ok"], p["description"], p["skip"]) for p in points] == [
        (True, "zeta_test.evt::works", None),
        (False, "zeta_test.evt::breaks", None),
        (True, "alpha_test.evt::has # and \\ and\\nnewline", None),
        (True, "alpha_test.evt::later", "no # feature \\ yet"),
        (False, "alpha_test.evt::times out", None)]
    assert "ok 3 - alpha_test.evt::has \\# and \\\\ and\\nnewline\n" in path.read_text()
    assert [p["yaml"] is None for p in points] == [True, False, True, True, False]
    failed, errored = points[1]["yaml"], points[4]["yaml"]
    assert failed == {"message": re.sub("[\ud800-\udfff]", "\ufffd", NASTY),
                      "severity": "fail", "duration_ms": 2000.0,
                      "details": re.sub("[\ud800-\udfff]", "\ufffd", DETAILS),
                      "stdout": "printed\n", "stderr": "warned\x00\n"}
    assert errored == {"message": "timed out after 60 s", "severity": "error",
                       "duration_ms": 60000.0}


def test_tap_read_by_tap_py(tmp_path: Path) -> None:
    path = tmp_path / "report.tap"
    plain = [r for r in sample() if "#" not in r.id + r.message]  # tap.py cannot read \#
    write_tap(plain, str(path))
    lines = list(Parser().parse_file(str(path)))
    assert [ln.category for ln in lines] == ["version", "plan", "test", "test", "test"]
    assert lines[0].version == 14 and lines[1].expected_tests == 3
    tests = lines[2:]
    assert [(t.ok, t.number, t.description, t.skip) for t in tests] == [
        (True, 1, "- zeta_test.evt::works", False),
        (False, 2, "- zeta_test.evt::breaks", False),
        (False, 3, "- alpha_test.evt::times out", False)]
    assert tests[0].yaml_block is None
    assert tests[1].yaml_block["severity"] == "fail"
    assert tests[1].yaml_block["details"] == re.sub("[\ud800-\udfff]", "\ufffd", DETAILS)
    assert tests[2].yaml_block == {"message": "timed out after 60 s", "severity": "error",
                                   "duration_ms": 60000.0}
    write_tap([TestResult("f.evt", "later", "skipped", message="not yet")], str(path))
    [_, _, skip] = Parser().parse_file(str(path))
    assert skip.ok and skip.skip and skip.directive.reason == "not yet"


def test_tap_empty_run(tmp_path: Path) -> None:
    path = tmp_path / "report.tap"
    write_tap([], str(path))
    assert path.read_text() == "TAP version 14\n1..0\n"


# --- JSON -----------------------------------------------------------------------------------


def test_json_entries(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json(sample(), str(path))
    text = path.read_bytes().decode("utf-8")
    assert text.startswith('[\n  {\n    "file": ') and "é ü 漢" in text  # UTF-8, indent 2
    entries = json.loads(text)
    assert all(set(e) == {"file", "name", "status", "seconds", "message", "stdout", "stderr",
                          "details"} for e in entries)
    expected = [r.as_json() for r in ordered(sample())]
    for e in expected:
        for k, v in e.items():
            if isinstance(v, str):
                e[k] = re.sub("[\ud800-\udfff]", "\ufffd", v)
    assert entries == expected
    assert [e["seconds"] for e in entries] == [0.012, 2.0, 1.5, 0.0, 60.0]


# --- everything at once, and the writing itself -----------------------------------------------

TEXT = st.text(st.characters(exclude_categories=()), max_size=40)


@settings(max_examples=60, deadline=None)
@given(file=TEXT.filter(str.strip), name=TEXT, message=TEXT, details=TEXT, out=TEXT,
       reason=TEXT)
def test_any_text_survives_every_report(file: str, name: str, message: str, details: str,
                                        out: str, reason: str) -> None:
    failed = TestResult(file, name, "failed", 0.5, message, details, out, out, (0, 0))
    skipped = TestResult(file, name + "2", "skipped", 0.0, reason, order=(0, 1))
    with tempfile.TemporaryDirectory() as d:
        write_junit([skipped, failed], f"{d}/j.xml", 1.0)
        write_tap([skipped, failed], f"{d}/t.tap")
        write_json([skipped, failed], f"{d}/r.json")
        schema().validate(f"{d}/j.xml")
        case = ET.parse(f"{d}/j.xml").find("testsuite/testcase")
        tap = parse_tap14(Path(f"{d}/t.tap").read_bytes())
        entries = json.loads(Path(f"{d}/r.json").read_text("utf-8"))
    assert case is not None and case.get("name") == xml_text(name)
    assert case.findtext("failure") == xml_text(details or message)
    assert case.findtext("system-out") == (xml_text(out) if out else None)
    assert tap[0]["description"] == tap_text(f"{file}::{name}").rstrip()
    assert tap[0]["yaml"].get("stdout") == (re.sub("[\ud800-\udfff]", "\ufffd", out) or None)
    reason_line = next((ln.strip() for ln in reason.splitlines() if ln.strip()), "")
    assert tap[1]["skip"] == (tap_text(reason_line).strip() if reason_line else "")
    assert [e["name"] for e in entries] == [re.sub("[\ud800-\udfff]", "\ufffd", n)
                                             for n in (name, name + "2")]


def test_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out" / "report.json"  # the directory is made
    old = os.umask(0o027)
    try:
        write_json(sample(), str(path))
    finally:
        os.umask(old)
    assert os.listdir(path.parent) == ["report.json"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o640  # the umask's, not a temp file's 0600
    before = path.read_bytes()

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", fail)
    for write in (lambda: write_json([], str(path)), lambda: write_tap([], str(path)),
                  lambda: write_junit([], str(path), 0.0)):
        with pytest.raises(OSError, match="disk full"):
            write()
        assert path.read_bytes() == before and os.listdir(path.parent) == ["report.json"]
