"""Operations end to end: one project through the gateway (engine and worker in process) with
the background consumers on. Its usage is metered and invoiced, its finish is notified by a
signed webhook, every event reaches NATS JetStream once, and the metrics move."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from pydantic import SecretStr

from soma.gateway.app import build_services, create_app
from soma.models.synthetic import SyntheticModel
from soma.notify.signing import verify
from soma.secrets import Vault
from soma.settings import Settings
from tests.gateway.conftest import LiveGateway, serve_in_thread
from tests.notify.conftest import Receiver, _serve
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-operations-test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver(fail_first=1))


@pytest.fixture
def ops_gateway(temporal_settings: Settings, tmp_path: Path) -> Iterator[LiveGateway]:
    run = uuid.uuid4().hex[:8]
    settings = temporal_settings.model_copy(
        update={
            "home": tmp_path,
            "task_queue": f"ops-{run}",
            "secret_key": SecretStr("test-secret-key-of-enough-length-0123456789"),
            "model": "synthetic",
            "event_export": "nats",
            "nats_stream": f"OPS_{run}",
            "nats_subject_prefix": f"ops{run}.events",
        }
    )
    services = build_services(settings, models={"synthetic": SyntheticModel()}.__getitem__)
    url, stop = serve_in_thread(create_app(services, engine=True, worker=True))
    try:
        yield LiveGateway(url, services)
    finally:
        stop()


async def _stream_messages(stream: str, subject_filter: str) -> list[tuple[str, dict[str, Any]]]:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            if message.subject.startswith(subject_filter):
                headers = message.headers or {}
                found.append((headers.get("Nats-Msg-Id", ""), json.loads(message.data or b"{}")))
        return found
    finally:
        await nc.close()


def test_a_project_is_metered_notified_exported_and_measured(
    ops_gateway: LiveGateway, receiver: Receiver
) -> None:
    services = ops_gateway.services
    admin = {"Authorization": f"Bearer {ops_gateway.key('acme', 'admin')}"}
    Vault(services.store, services.secret_key).set("acme", "webhook-signing", WEBHOOK_SECRET)
    services.store.create_notification_rule(
        "acme", "project.finished", "webhook", receiver.url, secret_name="webhook-signing"
    )
    with httpx.Client(base_url=ops_gateway.url, headers=admin, timeout=60) as client:
        created = client.post(
            "/api/v1/projects", json={"goal": "a csv tool", "planner": "template"}
        )
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]

        def finished() -> dict[str, Any] | None:
            for review in client.get("/api/v1/reviews").json():
                if review["project_id"] == project_id:
                    path = f"/api/v1/projects/{project_id}/reviews/{review['node_id']}/approve"
                    client.post(path, json={"comment": "ok"})
            state = client.get(f"/api/v1/projects/{project_id}").json()
            return state if state["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, "the project to finish", 240)
        assert final["status"] == "succeeded"

        # Metered once per model call; the invoice's model line is the project's tokens.
        invoice = client.get("/api/v1/billing/invoice").json()
        (model_line,) = [line for line in invoice["lines"] if line["kind"] == "model"]
        assert model_line["item"] == "synthetic"
        assert model_line["input_tokens"] == final["input_tokens"]
        assert model_line["output_tokens"] == final["output_tokens"]
        assert any(line["kind"] == "tool" for line in invoice["lines"])

        metrics = client.get("/metrics").text
        assert 'soma_projects_total{status="succeeded"}' in metrics
        assert 'soma_model_tokens_total{direction="input",model="synthetic"}' in metrics

    # The finish is notified: retried after the receiver's first 500, then signed and delivered.
    delivered = wait_for(lambda: receiver.count() >= 2, "the webhook delivery", 60)
    assert delivered
    last = receiver.requests[-1]
    payload = last.json()
    assert payload["type"] == "project.finished"
    assert payload["project_id"] == project_id
    assert payload["tenant_id"] == "acme"
    assert verify(WEBHOOK_SECRET, last.body, last.headers.get("X-Soma-Signature"))
    assert receiver.requests[0].headers["X-Soma-Delivery"] == last.headers["X-Soma-Delivery"]

    # Every event of the project is in the stream once, keyed for de-duplication.
    settings = services.settings
    stored = services.store.list_events(project_id, tenant_id="acme")
    prefix = f"{settings.nats_subject_prefix}.acme."

    def exported() -> list[tuple[str, dict[str, Any]]] | None:
        found = asyncio.run(_stream_messages(settings.nats_stream, prefix))
        return found if len(found) >= len(stored) else None

    messages = wait_for(exported, "the export of every event", 60)
    ids = [body["id"] for _, body in messages]
    assert ids == [event.id for event in stored]
    assert len({key for key, _ in messages}) == len(messages)
