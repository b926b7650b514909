"""SPEC §12's human outputs: the `--report-html` page opened in headless Debian Chromium
(Selenium) with the network off, and the live progress line on a real terminal (pexpect's
pty). Both against a `websockets` echo server in this process's thread."""

from __future__ import annotations

import io
import re
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from helpers import ENV_FOR_CLI, run_cli, write
from helpers.browser import chromium
from websockets.sync.server import ServerConnection, serve

T = 30  # seconds: the hard limit on a wait in this file


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    def echo(ws: ServerConnection) -> None:
        for msg in ws:
            ws.send(msg)

    with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        finally:
            server.shutdown()
            thread.join(T)


LOAD = """
    connection user {{ url = "{url}" }}
    threshold ws_expect_duration.p95 < 60s
    threshold ws_errors == 0
    on project start {{
        for i in range({users}) {{ open user }}
    }}
    on websocket start user from c {{
        for i in range({rounds}) {{
            send c "hello ${{i}}"
            expect c as r within 30s
            measure reply_len len(r)
            wait {pause}
        }}
        close c
    }}
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"), "--window-size=1200,1600",
                      console=True)
    try:
        yield driver
    finally:
        driver.quit()


def png_colours(png: bytes) -> int:
    """How many different pixels (RGBA) a screenshot has (a blank one has one)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, depth, ctype = 8, b"", 0, 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    seen: set[bytes] = set()
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filters
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 255
        if y % 4 == 0:
            seen.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp * 4))
        prev = line
    return len(seen)


def test_the_html_report_opens_offline_with_its_charts_drawn(
        tmp_path: Path, echo_url: str, browser: Any) -> None:
    script = write(tmp_path, LOAD.format(url=echo_url, users=10, rounds=60, pause="40ms"))
    page = tmp_path / "report.html"
    res = run_cli(["run", "--report-html", str(page), str(script)], timeout=120)
    assert res.code == 0, res.err
    html = page.read_text(encoding="utf-8")
    # one file: nothing it would fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    # offline, as someone who opens the file from a mail would
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    try:
        browser.get(page.as_uri())
        assert browser.title == "evt report: test.evt"
        drawn = browser.execute_script("""
            const box = (sel) => [...document.querySelectorAll(sel)]
                .map(e => e.getBBox()).filter(b => b.width > 0 && b.height > 0).length;
            return {bars: box('rect.bar'), lines: box('path.line'),
                    verdict: document.querySelector('.verdict').textContent,
                    rows: document.querySelectorAll('tbody tr').length};
        """)
        assert drawn["bars"] > 3 and drawn["lines"] >= 2, drawn
        assert "2 thresholds held" in drawn["verdict"]
        assert drawn["rows"] >= 10, drawn
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        charts = browser.find_elements("css selector", "svg")
        assert len(charts) >= 4  # the timeline and one histogram per trend
        for chart in charts[:2]:
            assert png_colours(chart.screenshot_as_png) > 3
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def test_the_progress_line_shows_on_a_terminal_and_keeps_print_intact(
        tmp_path: Path, echo_url: str) -> None:
    source = LOAD.format(url=echo_url, users=4, rounds=60, pause="50ms").replace(
        'measure reply_len len(r)', 'measure reply_len len(r)\n            print "line", i')
    script = write(tmp_path, source)
    seen = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "lang", "run", str(script)],
                          env=ENV_FOR_CLI, timeout=T, encoding="utf-8", dimensions=(24, 200))
    child.logfile_read = seen
    try:
        child.expect(r"evt \S+  open \d+  sent [\d,]+/s  received [\d,]+/s  errors 0")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close()
    text = seen.getvalue()
    assert child.exitstatus == 0, text[-2000:]
    assert text.endswith("\r\x1b[K") or "\r\x1b[K" in text[-200:]  # cleared at the end
    # every printed line came whole: the progress line is drawn after the text and erased
    # (back to the line's start, erase) before the next
    whole = re.sub(r"(?:evt [^\r\n]*?)?\r\x1b\[K", "", text)
    lines = [x for x in whole.replace("\r\n", "\n").split("\n") if x.strip()]
    assert len(lines) == 4 * 60 and all(re.fullmatch(r"line \d+", x) for x in lines), lines[:5]


def test_no_progress_line_when_stderr_is_not_a_terminal_or_with_quiet(
        tmp_path: Path, echo_url: str) -> None:
    script = write(tmp_path, LOAD.format(url=echo_url, users=2, rounds=25, pause="50ms"))
    res = run_cli(["run", str(script)], timeout=120)
    assert res.code == 0 and res.err == "", res.err
    child = pexpect.spawn(sys.executable, ["-m", "lang", "run", "--quiet", str(script)],
                          env=ENV_FOR_CLI, timeout=120, encoding="utf-8")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "open " not in (child.before or "")
