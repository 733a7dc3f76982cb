"""A gateway killed mid-stream: the client reconnects to another gateway process with
``Last-Event-ID`` and gets every event exactly once, in order.

Gateways keep no state of their own (the store holds the events the workers write), so a
restart loses nothing; this is what makes gateway restarts safe in the chaos family.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from soma.identity.secret import load_secret_key
from soma.identity.service import Identity
from soma.settings import Settings
from soma.store import Store
from tests.serve_process import start_gateway

pytestmark = pytest.mark.slow


def _events(lines: list[str]) -> list[tuple[int, str]]:
    """(id, event name) of each SSE event with an id, in order."""
    found: list[tuple[int, str]] = []
    current: dict[str, str] = {}
    for line in lines:
        if not line:
            if "id" in current:
                found.append((int(current["id"]), current.get("event", "message")))
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return found


def test_a_client_resumes_on_another_gateway_without_gaps(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = Store.open(settings.store_url)
    identity = Identity(store, load_secret_key(settings))
    identity.create_tenant("acme", "Acme")
    user = identity.create_user("acme", "ops@acme.test", "viewer")
    _, key = identity.create_key("acme", user.id, "stream")
    store.create_project("p-stream", "stream me", tenant_id="acme", status="running")
    ids = [store.add_event("p-stream", "step", f"event {n}", tenant_id="acme") for n in range(5)]
    headers = {"Authorization": f"Bearer {key}"}
    path = "/api/v1/projects/p-stream/events/stream"

    first, url = start_gateway(tmp_path)
    seen: list[tuple[int, str]] = []
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            with client.stream("GET", path) as stream:
                lines: list[str] = []
                for line in stream.iter_lines():
                    lines.append(line)
                    if len(_events(lines)) == 3:
                        break
            seen += _events(lines)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()

    ids += [store.add_event("p-stream", "step", f"later {n}", tenant_id="acme") for n in range(4)]
    second, url = start_gateway(tmp_path)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            resume = {"Last-Event-ID": str(seen[-1][0])}
            with client.stream("GET", path, headers=resume) as stream:
                lines = []
                finished = False
                for line in stream.iter_lines():
                    lines.append(line)
                    if not finished and len(_events(lines)) == len(ids) - len(seen):
                        ids.append(store.add_event("p-stream", "done", "last", tenant_id="acme"))
                        store.update_project("p-stream", tenant_id="acme", status="succeeded")
                        finished = True
                    if line.startswith("event: end"):
                        break
            seen += _events(lines)
    finally:
        second.kill()
        second.wait(timeout=10)

    assert [event_id for event_id, _ in seen] == ids, "every event once, in order, across gateways"
    assert seen[-1][1] == "done"
