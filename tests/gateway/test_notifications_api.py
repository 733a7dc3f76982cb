"""Notification rules over HTTP: admins add, list, test and remove the rules of their own
tenant and read its deliveries; secrets are named, never shown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from soma.identity.permissions import Role
from soma.notify import Notifier, verify
from soma.secrets import Vault
from tests.gateway.conftest import LiveGateway
from tests.notify.conftest import Receiver, _serve

SIGNING = "whsec-notify-api-SIGNING-value-5d1e"
RULES = "/api/v1/notifications/rules"
DELIVERIES = "/api/v1/notifications/deliveries"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


def _vault(gateway: LiveGateway) -> Vault:
    return Vault(gateway.services.store, gateway.services.secret_key)


def test_rule_lifecycle(gateway: LiveGateway) -> None:
    admin = gateway.headers("acme", "admin")
    with httpx.Client(base_url=gateway.url, headers=admin) as client:
        assert client.get(RULES).json() == []
        created = client.post(
            RULES,
            json={
                "event_type": "review.needed",
                "channel": "webhook",
                "target": "https://ops.acme.example/soma",
                "secret_name": "hooks.signing",  # not set yet: read at delivery time
            },
        )
        assert created.status_code == 201, created.text
        rule = created.json()
        assert rule["tenant_id"] == "acme"
        assert rule["event_type"] == "review.needed"
        assert rule["channel"] == "webhook"
        assert rule["target"] == "https://ops.acme.example/soma"
        assert rule["secret_name"] == "hooks.signing"
        assert rule["enabled"] is True

        slack = client.post(
            RULES,
            json={"event_type": "project.finished", "channel": "slack", "secret_name": "slack.url"},
        )
        assert slack.status_code == 201, slack.text
        assert slack.json()["target"] == ""
        email = client.post(
            RULES,
            json={
                "event_type": "budget.warning",
                "channel": "email",
                "target": "finance@acme.example,cto@acme.example",
            },
        )
        assert email.status_code == 201, email.text

        listed = client.get(RULES)
        assert listed.status_code == 200
        assert [r["id"] for r in listed.json()] == [
            rule["id"],
            slack.json()["id"],
            email.json()["id"],
        ]
        assert listed.json()[0] == rule

        deleted = client.delete(f"{RULES}/{rule['id']}")
        assert deleted.status_code == 204, deleted.text
        assert client.delete(f"{RULES}/{rule['id']}").status_code == 404
        assert [r["id"] for r in client.get(RULES).json()] == [
            slack.json()["id"],
            email.json()["id"],
        ]
    assert gateway.services.store.list_notification_rules("acme")[0].channel == "slack"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_type": "nope", "channel": "webhook", "target": "https://x.example"}, "event_type"),
        ({"event_type": "review.needed", "channel": "fax", "target": "1"}, "channel"),
        ({"event_type": "review.needed", "channel": "webhook", "target": "ftp://x"}, "target"),
        ({"event_type": "review.needed", "channel": "webhook"}, "target"),
        ({"event_type": "review.needed", "channel": "slack"}, "target"),
        ({"event_type": "review.needed", "channel": "email", "target": "not an address"}, "target"),
        (
            {
                "event_type": "review.needed",
                "channel": "email",
                "target": "a@b.c",
                "secret_name": "s",
            },
            "secret_name",
        ),
        (
            {
                "event_type": "review.needed",
                "channel": "webhook",
                "target": "https://x.example",
                "secret_name": "Bad Name",
            },
            "secret_name",
        ),
        (
            {
                "event_type": "review.needed",
                "channel": "webhook",
                "target": "https://x.example",
                "secret": "value",
            },
            "secret",
        ),
        ({"channel": "webhook", "target": "https://x.example"}, "event_type"),
    ],
)
def test_invalid_rules_are_422_with_the_field(
    gateway: LiveGateway, body: dict[str, str], field: str
) -> None:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers("acme", "admin")) as client:
        response = client.post(RULES, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request"
        assert error["field"] == field, error
        assert client.get(RULES).json() == []


def test_deliveries_query_is_validated(gateway: LiveGateway) -> None:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers("acme", "admin")) as client:
        assert client.get(DELIVERIES, params={"status": "lost"}).status_code == 422
        assert client.get(DELIVERIES, params={"limit": 0}).status_code == 422
        assert client.get(DELIVERIES, params={"limit": 1001}).status_code == 422
        assert client.get(DELIVERIES, params={"status": "failed", "limit": 5}).json() == []


@pytest.mark.parametrize("role", ["developer", "reviewer", "viewer"])
def test_only_admins(gateway: LiveGateway, role: Role) -> None:
    gateway.key("acme", "admin")  # creates the tenant
    rule = gateway.services.store.create_notification_rule(
        "acme", "review.needed", "webhook", "https://x.example/hook"
    )
    headers = gateway.headers("acme", role)
    body = {"event_type": "review.needed", "channel": "webhook", "target": "https://x.example"}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        assert client.get(RULES).status_code == 403
        assert client.post(RULES, json=body).status_code == 403
        assert client.delete(f"{RULES}/{rule.id}").status_code == 403
        assert client.post(f"{RULES}/{rule.id}/test").status_code == 403
        denied = client.get(DELIVERIES)
        assert denied.status_code == 403
        assert "notifications:manage" in denied.json()["error"]["message"]
    with httpx.Client(base_url=gateway.url) as anonymous:
        assert anonymous.get(RULES).status_code == 401
    assert len(gateway.services.store.list_notification_rules("acme")) == 1


def test_tenants_are_isolated(gateway: LiveGateway, receiver: Receiver) -> None:
    acme = gateway.headers("acme", "admin")
    globex = gateway.headers("globex", "admin")
    with httpx.Client(base_url=gateway.url) as client:
        created = client.post(
            RULES,
            json={"event_type": "review.needed", "channel": "webhook", "target": receiver.url},
            headers=acme,
        )
        rule_id = created.json()["id"]
        assert client.get(RULES, headers=globex).json() == []
        assert client.delete(f"{RULES}/{rule_id}", headers=globex).status_code == 404
        tested = client.post(f"{RULES}/{rule_id}/test", headers=globex)
        assert tested.status_code == 404
        assert tested.json()["error"]["type"] == "not_found"
        assert receiver.count() == 0

        store = gateway.services.store
        store.enqueue_notification(
            "acme", rule_id, "event:1", "review.needed", {"summary": "acme's review"}
        )
        assert client.get(DELIVERIES, headers=globex).json() == []
        (delivery,) = client.get(DELIVERIES, headers=acme).json()
        assert delivery["rule_id"] == rule_id
        assert delivery["summary"] == "acme's review"
        assert [r["id"] for r in client.get(RULES, headers=acme).json()] == [rule_id]


def test_test_send_reaches_the_receiver_signed(gateway: LiveGateway, receiver: Receiver) -> None:
    gateway.key("acme", "admin")  # creates the tenant
    _vault(gateway).set("acme", "hooks.signing", SIGNING)
    admin = gateway.headers("acme", "admin")
    seen: list[str] = []
    with httpx.Client(base_url=gateway.url, headers=admin, timeout=30) as client:
        created = client.post(
            RULES,
            json={
                "event_type": "project.finished",
                "channel": "webhook",
                "target": receiver.url,
                "secret_name": "hooks.signing",
            },
        )
        assert created.status_code == 201, created.text
        seen.append(created.text)
        rule_id = created.json()["id"]

        tested = client.post(f"{RULES}/{rule_id}/test")
        assert tested.status_code == 200, tested.text
        seen.append(tested.text)
        assert tested.json()["delivered"] is True
        assert tested.json()["error"] is None
        seen.append(client.get(RULES).text)

    (request,) = receiver.requests
    assert request.path == "/hooks/soma"
    verify(SIGNING, request.body, request.headers["X-Soma-Signature"])
    assert request.headers["X-Soma-Event"] == "project.finished"
    assert request.headers["X-Soma-Delivery"] == f"test-{rule_id}"
    payload = request.json()
    assert payload["type"] == "project.finished"
    assert payload["tenant_id"] == "acme"
    assert payload["data"]["test"] is True
    for text in seen:
        assert SIGNING not in text


def test_test_send_reports_failures(gateway: LiveGateway, receiver: Receiver) -> None:
    admin = gateway.headers("acme", "admin")
    receiver.status = 410
    with httpx.Client(base_url=gateway.url, headers=admin, timeout=30) as client:
        rule_id = client.post(
            RULES,
            json={"event_type": "review.needed", "channel": "webhook", "target": receiver.url},
        ).json()["id"]
        refused = client.post(f"{RULES}/{rule_id}/test")
        assert refused.status_code == 200, refused.text
        body = refused.json()
        assert body["delivered"] is False
        assert body["retryable"] is False
        assert "HTTP 410" in body["error"]
        assert receiver.count() == 1

        # A named secret that is not set: temporary, and the test says which secret.
        signed = client.post(
            RULES,
            json={
                "event_type": "review.needed",
                "channel": "webhook",
                "target": receiver.url,
                "secret_name": "not.yet",
            },
        ).json()["id"]
        missing = client.post(f"{RULES}/{signed}/test").json()
        assert missing["delivered"] is False
        assert missing["retryable"] is True
        assert "not.yet" in missing["error"]
        assert receiver.count() == 1

        assert client.post(f"{RULES}/missing/test").status_code == 404


def test_deliveries_show_status_but_no_secrets(gateway: LiveGateway, receiver: Receiver) -> None:
    admin = gateway.headers("acme", "admin")
    _vault(gateway).set("acme", "hooks.signing", SIGNING)
    store = gateway.services.store
    with httpx.Client(base_url=gateway.url, headers=admin) as client:
        rule_id = client.post(
            RULES,
            json={
                "event_type": "review.needed",
                "channel": "webhook",
                "target": receiver.url,
                "secret_name": "hooks.signing",
            },
        ).json()["id"]
        for n in (1, 2, 3):
            store.enqueue_notification(
                "acme", rule_id, f"event:{n}", "review.needed", {"summary": f"review {n}"}
            )
        receiver.fail_first, receiver.fail_status = 1, 400  # the first one sent fails for good

        notifier = Notifier(store, gateway.services.settings, gateway.services.secret_key)

        async def deliver() -> None:
            try:
                await notifier.deliver_due()
            finally:
                await notifier.aclose()

        asyncio.run(deliver())
        assert receiver.count() == 3

        listed = client.get(DELIVERIES)
        assert listed.status_code == 200
        deliveries = listed.json()
        assert [d["event_key"] for d in deliveries] == ["event:3", "event:2", "event:1"]
        assert sorted(d["status"] for d in deliveries) == ["delivered", "delivered", "failed"]
        assert all("payload" not in d for d in deliveries)
        (failed,) = client.get(DELIVERIES, params={"status": "failed"}).json()
        assert "HTTP 400" in failed["last_error"]
        assert failed["attempts"] == 1
        assert failed["delivered_at"] is None
        assert len(client.get(DELIVERIES, params={"limit": 2}).json()) == 2
        assert client.get(DELIVERIES, params={"rule_id": "other"}).json() == []
        assert SIGNING not in listed.text
