"""A real browser against an evt server: headless Debian Chromium driven by Selenium.

The page is the shipped example, examples/chat.html, served over HTTP from 127.0.0.1 (so the
browser sends a real `Origin: http://127.0.0.1:PORT`), and the server is the shipped
examples/chat_server.evt with its `origins` line switched on, run by the real CLI in a
subprocess (`evt run -v ... --set listen=127.0.0.1:0`). A `websockets` client joins the chat
beside the browser, so what the browser sends comes back through the server to Python, and
what Python sends shows up in the browser's page.

The tests skip only when chromium or chromedriver is not installed (loudly).
"""

from __future__ import annotations

import functools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT
from helpers.browser import chromium
from websockets.sync.client import connect as sync_connect

T = 20  # seconds: the hard limit on a wait in this file (a browser can be slow to start)
LISTENING = re.compile(r"^chat: listening on ws://127\.0\.0\.1:(\d+)/$")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_origin() -> Iterator[str]:
    """examples/ over HTTP on 127.0.0.1; the page's origin, `http://127.0.0.1:PORT`."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT / "examples"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(T)


@dataclass
class EvtProcess:
    proc: subprocess.Popen[str]
    port: int
    lines: queue.Queue[str | None]  # stderr, line by line; None at its end

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM; the exit code and the rest of stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(T)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(T)
            raise
        rest = []
        while (line := self.lines.get(timeout=T)) is not None:
            rest.append(line)
        return code, rest


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[Any]:
    """Start examples/chat_server.evt with `origins = ORIGINS` in a subprocess."""
    started: list[EvtProcess] = []

    def start(origins: list[str]) -> EvtProcess:
        source = (ROOT / "examples" / "chat_server.evt").read_text(encoding="utf-8")
        commented = re.search(r"^ *# origins = .*$", source, re.M)
        assert commented, "examples/chat_server.evt has no commented-out origins line"
        listed = ", ".join(f'"{o}"' for o in origins)
        script = tmp_path / "chat_server.evt"
        script.write_text(source.replace(commented[0], f"    origins = [{listed}]"),
                          encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lang", "run", "-v", "--set", "listen=127.0.0.1:0",
             str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=env)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        seen = []
        while True:
            line = lines.get(timeout=T)
            assert line is not None, f"the server ended before listening: {seen}"
            seen.append(line)
            m = LISTENING.match(line)
            if m:
                break
        evt = EvtProcess(proc, int(m[1]), lines)
        started.append(evt)
        return evt

    yield start
    for evt in started:
        if evt.proc.poll() is None:
            evt.proc.kill()
            evt.proc.wait(T)


def _wait_text(driver: Any, element_id: str, predicate: Any, what: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d: Any) -> str | bool:
        text = d.find_element(By.ID, element_id).text
        return text if predicate(text) else False

    try:
        return WebDriverWait(driver, T, poll_frequency=0.05).until(check)
    except Exception as e:
        text = driver.find_element(By.ID, element_id).text
        raise AssertionError(f"#{element_id} never showed {what}; it shows {text!r}") from e


def _log_lines(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [div.text for div in driver.find_elements(By.CSS_SELECTOR, "#log > div")]


def _wait_log(driver: Any, line: str) -> None:
    _wait_text(driver, "log", lambda text: line in text.splitlines(), repr(line))


def _type(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.ID, "line").send_keys(text + Keys.ENTER)


def test_browser_chats_through_the_evt_server(browser: Any, http_origin: str,
                                              chat_server: Any) -> None:
    evt = chat_server([http_origin])
    ws_url = f"ws://127.0.0.1:{evt.port}/"
    browser.get(f"{http_origin}/chat.html?ws={ws_url}")
    _wait_text(browser, "status", lambda t: t == f"connected to {ws_url}", "connected")
    _wait_log(browser, "* welcome! what is your name?")
    _type(browser, "chrome")
    _wait_log(browser, "* hello chrome; 0 other(s) here")

    with sync_connect(ws_url, origin=http_origin, open_timeout=T, close_timeout=T,
                      ping_interval=None) as py:
        assert py.recv(timeout=T) == "* welcome! what is your name?"
        py.send("python")
        assert py.recv(timeout=T) == "* hello python; 1 other(s) here"
        _wait_log(browser, "* python joined")

        _type(browser, "hello from the browser ✓")  # browser -> evt -> python
        assert py.recv(timeout=T) == "chrome: hello from the browser ✓"
        py.send("hi chrome, <b>not bold</b>")  # python -> evt -> browser
        _wait_log(browser, "python: hi chrome, <b>not bold</b>")
    _wait_log(browser, "* python left")

    assert _log_lines(browser) == [
        "* welcome! what is your name?",
        "> chrome",
        "* hello chrome; 0 other(s) here",
        "* python joined",
        "> hello from the browser ✓",
        "python: hi chrome, <b>not bold</b>",
        "* python left",
    ]
    code, stderr = evt.stop()
    assert code == 143, stderr
    assert not [line for line in stderr if "refused" in line or "error" in line], stderr


def test_browser_from_an_origin_not_listed_is_refused(browser: Any, http_origin: str,
                                                      chat_server: Any) -> None:
    other = http_origin.replace("127.0.0.1", "localhost")  # same port, another origin
    evt = chat_server([other, "https://example.org"])
    ws_url = f"ws://127.0.0.1:{evt.port}/"
    browser.get(f"{http_origin}/chat.html?ws={ws_url}")
    # onerror, then onclose with 1006: the handshake was refused
    _wait_text(browser, "status", lambda t: t == "closed (1006)", "closed (1006)")
    assert _log_lines(browser) == []
    code, stderr = evt.stop()
    assert code == 143, stderr
    refusals = [line for line in stderr if "refused" in line]
    assert len(refusals) == 1, stderr
    assert "HTTP 403" in refusals[0] and f"origin '{http_origin}' is not allowed" in refusals[0]
