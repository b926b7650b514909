"""Headless Debian Chromium driven by Selenium, for the tests that meet a real browser (the
chat example, the HTML report). They skip only when chromium or chromedriver is missing,
and say so loudly."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

T = 20  # seconds: page loads and scripts (a browser can be slow to start)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def skip_unless_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER)
               if not (os.path.exists(p) or shutil.which(os.path.basename(p)))]
    if missing:
        reason = (f"NO REAL-BROWSER TESTS: {', '.join(missing)} not installed "
                  "(apt-get install chromium chromium-driver)")
        print(f"\nWARNING: {reason}", file=sys.stderr)
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)


def chromium(profile: Path, *extra: str, console: bool = False) -> Any:
    """A headless Chromium (skipping the test when there is none); `console` keeps the
    page's console messages for `driver.get_log("browser")`. The caller quits it."""
    skip_unless_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", *extra):
        options.add_argument(arg)
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(T)
    driver.set_script_timeout(T)
    return driver
