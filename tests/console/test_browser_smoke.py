"""Smoke test for the console's browser fixtures: a real page, a click, a screenshot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page

from tests.console.browser import Screenshots

HTML = b"""<!doctype html>
<html>
  <head><meta charset="utf-8"><title>soma smoke</title></head>
  <body>
    <button id="go" type="button">Click me</button>
    <script>
      document.getElementById("go").addEventListener("click", (event) => {
        event.target.textContent = "Clicked";
      });
    </script>
  </body>
</html>
"""


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(HTML)))
        self.end_headers()
        self.wfile.write(HTML)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def smoke_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_click_changes_text_and_screenshot(
    page: Page, screenshots: Screenshots, smoke_url: str
) -> None:
    page.goto(smoke_url)
    button = page.locator("#go")
    assert button.text_content() == "Click me"

    button.click()

    assert button.text_content() == "Clicked"
    shot = screenshots(page, "clicked")
    assert shot.is_file()
    assert shot.stat().st_size > 0
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
