"""Headless Chromium fixtures for the web console's end-to-end tests.

The browser is Debian's ``chromium`` package driven by Playwright's sync API; Playwright's own
browser download (``playwright install``) is never used. ``.ci/run`` installs the package when
``/usr/bin/chromium`` is missing. Outside CI (``CI`` unset) a missing browser skips the tests;
in CI it fails them, so the console is never silently left untested.

Import the fixtures into a conftest to use them::

    from tests.console.browser import browser, page, screenshots

The sync API cannot run inside a running asyncio loop, so console tests are plain ``def``
tests (pytest-asyncio's auto mode leaves those alone), not ``async def``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Screenshots", "browser", "page", "screenshots"]

CHROMIUM = Path("/usr/bin/chromium")

# --no-sandbox: CI runs as root in a container, where Chromium's own sandbox cannot start.
# --disable-dev-shm-usage: shared memory goes to /tmp, for containers with a small /dev/shm.
# The rest keep the browser from phoning home (updates, sync, QUIC) or doing first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
DEFAULT_TIMEOUT_MS = 30_000

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (launching takes ~0.2 s). Not per session: the
    sync API keeps an event loop of its own while it runs, which the async tests of later
    modules should never meet."""
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} not found; install Debian's chromium package (apt-get install chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the console tests", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (no shared cookies or storage), closed afterwards."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot_dir() -> Path:
    """``$SOMA_SCREENSHOTS`` if set, else ``<repo>/test-artifacts/screenshots``."""
    configured = os.environ.get("SOMA_SCREENSHOTS")
    return Path(configured) if configured else REPO_ROOT / "test-artifacts" / "screenshots"


class Screenshots:
    """Writes full-page PNGs of a page into ``directory``; call it as ``shoot(page, name)``.

    Files are named ``<test>__<name>.png`` (both reduced to safe characters), so screenshots
    from different tests never overwrite each other.
    """

    def __init__(self, directory: Path, prefix: str = "") -> None:
        self.directory = directory
        self.prefix = prefix

    def __call__(self, page: Page, name: str) -> Path:
        return self.shoot(page, name)

    def shoot(self, page: Page, name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = _safe(f"{self.prefix}__{name}" if self.prefix else name)
        path = self.directory / f"{stem}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "screenshot"


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    """``screenshots(page, "name")`` saves a full-page PNG and returns its path."""
    return Screenshots(screenshot_dir(), prefix=request.node.name)
