"""Secrets never leak: after a realistic flow through a live gateway on the real engine, no log
line, span, store cell or workspace file holds an API key's secret, a session token, a vault
value or the instance secret key (masked forms such as ``soma_<id>_***`` are fine).

Tenant isolation (every route walked with another tenant's credentials) is covered by
``tests/gateway/test_isolation.py`` and not repeated here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from soma.admin._rows import TABLES, engine_for
from soma.identity.keys import hash_secret
from soma.models.synthetic import SyntheticModel
from soma.settings import Settings
from soma.telemetry.logs import configure_logging
from tests.gateway.conftest import LiveGateway
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_logging")]

VAULT_VALUES = {
    "github.token": "ghp_" + "VaultLeakCanary" * 3,
    "slack.webhook": "https://hooks.slack.test/T000/B000/" + "xoxCanary9" * 3,
    "db.password": "pw-" + "CorrectHorseBattery" * 2,
}


def _secret_part(key: str) -> str:
    prefix, _key_id, secret = key.split("_", 2)
    assert prefix == "soma"
    return secret


def test_secrets_never_leak(
    engine_gateway: LiveGateway,
    model_table: dict[str, Any],
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="DEBUG"), stream=stream)
    root = logging.getLogger()
    if caplog.handler not in root.handlers:  # configure_logging replaces the root's handlers
        root.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    model_table["synthetic"] = SyntheticModel()
    services = engine_gateway.services

    admin_key = engine_gateway.key("acme", "admin")
    reviewer_key = engine_gateway.key("acme", "reviewer")
    admin = {"Authorization": f"Bearer {admin_key}"}
    reviewer = {"Authorization": f"Bearer {reviewer_key}"}
    with httpx.Client(base_url=engine_gateway.url, timeout=60) as client:
        me = client.get("/api/v1/me", headers=admin).json()
        session = services.identity.issue_session("acme", me["user_id"])
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {session}"}).is_success
        for name, value in VAULT_VALUES.items():
            response = client.put(f"/api/v1/secrets/{name}", json={"value": value}, headers=admin)
            assert response.status_code == 204, response.text
        listed = client.get("/api/v1/secrets", headers=admin)
        assert {s["name"] for s in listed.json()} == set(VAULT_VALUES)

        created = client.post("/api/v1/keys", json={"name": "ci"}, headers=admin)
        assert created.status_code == 201, created.text
        new_key = created.json()["key"]  # shown this once
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_key}"}).is_success

        # Failed authentications are logged: with the key id, never the secret.
        key_id = admin_key.split("_")[1]
        wrong = f"soma_{key_id}_{_secret_part(admin_key)[::-1]}"
        for bad in (wrong, f"{session}x"):
            response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401

        chat = client.post(
            "/v1/chat/completions",
            json={"model": "synthetic", "messages": [{"role": "user", "content": "hello"}]},
            headers=admin,
        )
        assert chat.status_code < 500, chat.text

        project = client.post(
            "/api/v1/projects",
            json={"goal": "a word-count CLI", "planner": "template", "concurrency": 4},
            headers=admin,
        )
        assert project.status_code == 201, project.text
        project_id = project.json()["id"]

        def finished() -> dict[str, Any] | None:
            for review in client.get("/api/v1/reviews", headers=reviewer).json():
                if review["project_id"] == project_id:
                    path = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}/approve"
                    client.post(path, json={"comment": "lgtm"}, headers=reviewer)
            state = client.get(f"/api/v1/projects/{project_id}", headers=admin).json()
            return state if state["status"] in ("succeeded", "failed") else None

        assert wait_for(finished, "the project to finish")["status"] == "succeeded"

        # An API key is never retrievable after creation: not from the API...
        keys_listing = client.get("/api/v1/keys", headers=admin).text
        api_responses = [keys_listing, listed.text, client.get("/api/v1/me", headers=admin).text]

    keys = [admin_key, reviewer_key, new_key]
    secret_parts = [_secret_part(key) for key in keys]
    for key, secret in zip(keys, secret_parts, strict=True):
        assert secret not in keys_listing
        assert key.split("_")[1] in keys_listing or key == reviewer_key  # ids are listed
    # ... nor from the store, which holds only its sha256.
    with engine_for(services.settings.store_url).connect() as conn:
        stored = {row.id: row.secret_hash for row in conn.execute(select(TABLES_BY["api_keys"]))}
    for key, secret in zip(keys, secret_parts, strict=True):
        assert stored[key.split("_")[1]] == hash_secret(secret)
        assert stored[key.split("_")[1]] == hashlib.sha256(secret.encode()).hexdigest()

    instance_secret = services.secret_key.decode("utf-8", "replace")
    forbidden = {
        **{f"API key secret {n}": s for n, s in enumerate(secret_parts)},
        "session token": session,
        "session token signature": session.rsplit(".", 1)[-1],
        **{f"vault value {name}": value for name, value in VAULT_VALUES.items()},
        "instance secret key": instance_secret,
        "instance secret key (hex)": services.secret_key.hex(),
        "instance secret key (base64)": base64.b64encode(services.secret_key).decode(),
    }

    places: dict[str, str] = {}
    # Logs: the JSON output and every record as caplog saw it (before any formatter's masking).
    places["log output (JSON)"] = stream.getvalue()
    for n, record in enumerate(caplog.records):
        places[f"log record {n} ({record.name})"] = _record_text(record)
    # Spans: names, attributes, events, status.
    for n, span in enumerate(spans.get_finished_spans()):
        places[f"span {n} ({span.name})"] = _span_text(span)
    places.update({f"API response {n}": text for n, text in enumerate(api_responses)})
    # Every cell of every table of the store.
    places.update(_store_cells(services.settings.store_url))
    # The workspaces: working files and the full git history.
    places.update(_workspace_texts(services.settings.workspaces_dir))

    assert len(caplog.records) > 10
    assert len(spans.get_finished_spans()) > 10
    assert any(name.startswith("workspace file") for name in places)
    leaks = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, secret in forbidden.items()
        if secret and secret in text
    ]
    assert not leaks, leaks
    print(f"\nscanned {len(places)} places for {len(forbidden)} secrets")

    # The scan does see what it looks for: a value logged raw shows up in caplog's records.
    logging.getLogger("soma.test").warning("planted %s", VAULT_VALUES["github.token"])
    assert VAULT_VALUES["github.token"] in _record_text(caplog.records[-1])


TABLES_BY = {table.name: table for table in TABLES}


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def _span_text(span: Any) -> str:
    data = {
        "name": span.name,
        "attributes": dict(span.attributes or {}),
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "status": span.status.description,
        "resource": dict(span.resource.attributes),
    }
    return json.dumps(data, default=str)


def _store_cells(url: str) -> dict[str, str]:
    cells: dict[str, str] = {}
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            for table in TABLES:
                for n, row in enumerate(conn.execute(select(table)).mappings()):
                    for column, value in row.items():
                        if value is None:
                            continue
                        if isinstance(value, bytes | memoryview):
                            text = bytes(value).decode("latin-1")
                        elif isinstance(value, str):
                            text = value
                        else:
                            text = json.dumps(value, default=str)
                        cells[f"store {table.name}[{n}].{column}"] = text
    finally:
        engine.dispose()
    return cells


def _workspace_texts(root: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            texts[f"workspace file {path.relative_to(root)}"] = path.read_bytes().decode("latin-1")
    for repo in sorted(p.parent for p in root.glob("*/.git")):
        history = subprocess.run(
            ["git", "log", "--all", "-p", "--format=%H %an <%ae>%n%B"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        texts[f"workspace history {repo.name}"] = history
    return texts
