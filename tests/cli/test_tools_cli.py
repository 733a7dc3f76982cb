"""`soma tools list|show|test` against the real registry, constitution and secret vault."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soma.cli.main import app
from soma.identity.secret import load_secret_key
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store

runner = CliRunner()
SECRET = "tok-" + "7" * 24


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SOMA_HOME": str(tmp_path), "COLUMNS": "200", "SOMA_SANDBOX": "subprocess"}


@pytest.fixture
def echo_server() -> Iterator[str]:
    """Answers every GET with a body that repeats the secret, as a careless upstream might."""

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"hello; your token is {SECRET}".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_list_and_show(env: dict[str, str]) -> None:
    listed = runner.invoke(app, ["tools", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    for name in ("fs.read", "shell.exec", "github.merge_pr", "slack.post_message", "http.fetch"):
        assert name in listed.output
    shown = runner.invoke(app, ["tools", "show", "github.merge_pr"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "approve-merge" in shown.output
    assert "require_approval" in shown.output
    missing = runner.invoke(app, ["tools", "show", "github.merge"], env=env)
    assert missing.exit_code == 2
    assert "github.merge_pr" in missing.output  # did-you-mean


def test_dry_run_stops_where_the_constitution_would(env: dict[str, str]) -> None:
    denied = runner.invoke(
        app, ["tools", "test", "http.fetch", "--args", '{"url": "https://example.com"}'], env=env
    )
    assert denied.exit_code == 1
    assert "deny-http-unlisted-hosts" in denied.output
    gated = runner.invoke(
        app,
        ["tools", "test", "github.merge_pr", "--args", '{"repo": "o/r", "number": 1}'],
        env=env,
    )
    assert gated.exit_code in (1, 2), gated.output
    bad = runner.invoke(app, ["tools", "test", "fs.list", "--args", "[1]"], env=env)
    assert bad.exit_code == 2
    assert "JSON object" in bad.output


def test_dry_run_masks_the_tenants_secrets(env: dict[str, str], echo_server: str) -> None:
    settings = Settings(home=Path(env["SOMA_HOME"]))
    Vault(Store.open(settings.store_url), load_secret_key(settings)).set(
        "default", "probe.token", SECRET, actor="test"
    )
    ran = runner.invoke(
        app, ["tools", "test", "http.fetch", "--args", json.dumps({"url": echo_server})], env=env
    )
    assert ran.exit_code == 0, ran.output
    assert "your token is [secret]" in ran.output
    assert SECRET not in ran.output
