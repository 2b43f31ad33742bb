"""Fixtures for the browser tests: a real server (gRPC + REST) and headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rest import RestTestServer, rest_server

CHROMIUM = os.environ.get("ADVANTAGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ADVANTAGE_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "`make test` installs them (apt-get install chromium chromium-driver; pip selenium)"


@pytest.fixture(scope="session")
def browser_server() -> Iterator[RestTestServer]:
    with rest_server() as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium driven by Debian's chromedriver (no browser download, no network).

    Missing tools fail the test (CI must run it); set ADVANTAGE_SKIP_BROWSER_TESTS=1 to skip.
    """
    if os.environ.get("ADVANTAGE_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("ADVANTAGE_SKIP_BROWSER_TESTS=1")
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            pytest.fail(f"{tool} not found; {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed; {INSTALL}")
    profile = tempfile.mkdtemp(prefix="advantage-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
