"""Slack's interactivity callback against a live gateway connected to the session's Temporal.

The approve/reject path signals a real workflow execution: one started under the project's
workflow id on a task queue no worker polls, so the signal lands durably in its history, where
the test reads the decision back, without running a whole project.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from soma.gateway.app import build_services, create_app
from soma.gateway.routes import slack
from soma.gateway.services import Services
from soma.orchestrator.projects import workflow_id
from soma.orchestrator.types import ReviewDecision
from soma.settings import Settings
from soma.tools.adapters.slack import APPROVE_ACTION, REJECT_ACTION, approval_value
from tests.gateway.conftest import serve_in_thread

SIGNING_SECRET = "slack-signing-secret-for-tests"
TENANT = "acme"


@dataclass
class SlackGateway:
    url: str
    services: Services


@pytest.fixture
def slack_gateway(temporal_settings: Settings, tmp_path: Path) -> Iterator[SlackGateway]:
    settings = temporal_settings.model_copy(
        update={
            "home": tmp_path,
            "task_queue": f"slack-{uuid.uuid4().hex[:8]}",
            "secret_key": SecretStr("test-secret-key-of-enough-length-0123456789"),
        }
    )
    services = build_services(settings)
    services.identity.create_tenant(TENANT, "Acme")
    app = create_app(services, engine=True, worker=False)
    app.include_router(slack.router)
    secrets = {(TENANT, slack.SIGNING_SECRET): SIGNING_SECRET}
    app.state.slack_secrets = lambda tenant, name: secrets.get((tenant, name))
    url, stop = serve_in_thread(app)
    try:
        yield SlackGateway(url, services)
    finally:
        stop()


def _body(action_id: str, value: str) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U123", "username": "ada"},
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def _post(
    gw: SlackGateway,
    body: bytes,
    *,
    tenant: str = TENANT,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack.slack_signature(secret, ts, body),
    }
    return httpx.post(
        f"{gw.url}/integrations/slack/{tenant}/actions", content=body, headers=headers
    )


def test_bad_signature_is_refused(slack_gateway: SlackGateway) -> None:
    body = _body(APPROVE_ACTION, approval_value("p", "n", None))
    response = _post(slack_gateway, body, secret="not-the-secret")
    assert response.status_code == 401
    assert "signature does not match" in response.json()["error"]["message"]


def test_missing_signature_is_refused(slack_gateway: SlackGateway) -> None:
    body = _body(APPROVE_ACTION, approval_value("p", "n", None))
    response = httpx.post(f"{slack_gateway.url}/integrations/slack/{TENANT}/actions", content=body)
    assert response.status_code == 401


def test_stale_timestamp_is_refused(slack_gateway: SlackGateway) -> None:
    body = _body(APPROVE_ACTION, approval_value("p", "n", None))
    response = _post(slack_gateway, body, timestamp=int(time.time()) - 400)
    assert response.status_code == 401
    assert "5 minutes" in response.json()["error"]["message"]


def test_tenant_without_signing_secret_is_refused(slack_gateway: SlackGateway) -> None:
    body = _body(APPROVE_ACTION, approval_value("p", "n", None))
    assert _post(slack_gateway, body, tenant="other").status_code == 401


def test_unknown_review_is_explained_with_200(slack_gateway: SlackGateway) -> None:
    response = _post(slack_gateway, _body(APPROVE_ACTION, approval_value("nope", "n", None)))
    assert response.status_code == 200
    assert "No pending review" in response.text


def test_other_tenants_review_is_not_found(slack_gateway: SlackGateway) -> None:
    store = slack_gateway.services.store
    slack_gateway.services.identity.create_tenant("globex", "Globex")
    store.create_project("p-globex", "goal", tenant_id="globex")
    store.open_review("p-globex", "n1", 0, tenant_id="globex")
    response = _post(slack_gateway, _body(APPROVE_ACTION, approval_value("p-globex", "n1", None)))
    assert response.status_code == 200
    assert "No pending review" in response.text


def test_stale_round_is_explained(slack_gateway: SlackGateway) -> None:
    store = slack_gateway.services.store
    store.create_project("p-round", "goal", tenant_id=TENANT)
    store.open_review("p-round", "n1", 1, tenant_id=TENANT)
    response = _post(slack_gateway, _body(APPROVE_ACTION, approval_value("p-round", "n1", 0)))
    assert response.status_code == 200
    assert "round 0" in response.text
    assert "round 1" in response.text


def test_non_soma_payload_is_acknowledged(slack_gateway: SlackGateway) -> None:
    response = _post(slack_gateway, urlencode({"payload": '{"type": "view_submission"}'}).encode())
    assert response.status_code == 200
    assert "Nothing to do" in response.text


@pytest.mark.parametrize(("action", "approved"), [(APPROVE_ACTION, True), (REJECT_ACTION, False)])
async def test_click_signals_the_project_workflow(
    slack_gateway: SlackGateway, temporal_client: Client, action: str, approved: bool
) -> None:
    project_id = f"p-{uuid.uuid4().hex[:8]}"
    store = slack_gateway.services.store
    store.create_project(project_id, "goal", tenant_id=TENANT)
    store.open_review(project_id, "n1", 0, tenant_id=TENANT)
    handle = await temporal_client.start_workflow(
        "ProjectWorkflow",
        id=workflow_id(project_id),
        task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
    )
    try:
        body = _body(action, approval_value(project_id, "n1", 0))
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{slack_gateway.url}/integrations/slack/{TENANT}/actions",
                content=body,
                headers=_signed_headers(body),
            )
        assert response.status_code == 200, response.text
        assert ("Approved" if approved else "Rejected") in response.text
        history = await handle.fetch_history()
        signals = [
            e.workflow_execution_signaled_event_attributes
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        ]
        assert [s.signal_name for s in signals] == ["review"]
        node_id, decision = await temporal_client.data_converter.decode(
            signals[0].input.payloads, [str, ReviewDecision]
        )
        assert node_id == "n1"
        assert decision == ReviewDecision(
            approved=approved, comment="via Slack by ada", reviewer="slack:U123", round=0
        )
    finally:
        await handle.terminate()


def _signed_headers(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack.slack_signature(SIGNING_SECRET, ts, body),
    }
