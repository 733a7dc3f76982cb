"""`soma serve` as a real subprocess, for tests that need several gateway processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_gateway(
    home: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A model-only gateway (`--no-engine`) on a free port, once it answers /healthz.

    No embedded model is loaded (these tests need none) and no ambient Redis limiter is used
    unless ``env`` asks for one.
    """
    port = free_port()
    full = {**os.environ, "SOMA_HOME": str(home), "SOMA_MODEL": "openai:unused"}
    full.pop("SOMA_RATE_LIMIT_URL", None)
    full.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "soma", "serve", "--no-engine", "--port", str(port)],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"gateway exited: {errors[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gateway did not come up")
