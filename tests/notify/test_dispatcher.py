"""The notifier end to end: store events → outbox → real loopback receivers, with retries,
permanent failures, tenant isolation and idempotency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from soma.notify import Notifier, build_notifier
from soma.notify.signing import SignatureError, verify
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from tests.notify.conftest import KEY, Receiver, Smtp, wait_for

SECRET = "whsec-dispatcher-0123456789"

NotifierFactory = Callable[..., Notifier]


@pytest.fixture
async def make_notifier(store: Store, smtp: Smtp) -> AsyncIterator[NotifierFactory]:
    made: list[Notifier] = []
    settings = Settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_sender="soma@hub.test")

    def make(**options: Any) -> Notifier:
        options.setdefault("backoff_base_s", 0.05)
        options.setdefault("poll_interval_s", 0.02)
        notifier = Notifier(store, settings, KEY, **options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.aclose()


async def run_until(notifier: Notifier, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {timeout_s} s")
        await notifier.run_once()
        await asyncio.sleep(0.02)


def project(store: Store, pid: str, tenant: str) -> str:
    store.create_project(pid, "write the quarterly report", tenant_id=tenant)
    return pid


async def test_review_needed_webhook_is_retried_then_delivered_signed(
    store: Store, vault: Vault, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    vault.set("acme", "hooks.signing", SECRET)
    rule = store.create_notification_rule(
        "acme", "review.needed", "webhook", receiver.url, secret_name="hooks.signing"
    )
    pid = project(store, "p-review", "acme")
    event_id = store.add_event(
        pid,
        "review_requested",
        "review the draft",
        node_id="n1",
        data={"gate": 0},
        tenant_id="acme",
    )
    receiver.fail_first = 2
    notifier = make_notifier()

    def delivered() -> bool:
        return [d.status for d in store.list_notification_deliveries("acme")] == ["delivered"]

    await run_until(notifier, delivered)

    assert receiver.count() == 3
    ids = {r.headers["X-Soma-Delivery"] for r in receiver.requests}
    assert len(ids) == 1  # the same delivery id on every retry: receivers de-duplicate on it
    last = receiver.requests[-1]
    assert last.headers["X-Soma-Event"] == "review.needed"
    verify(SECRET, last.body, last.headers["X-Soma-Signature"])
    with pytest.raises(SignatureError):
        verify("not-the-secret", last.body, last.headers["X-Soma-Signature"])
    body = last.json()
    assert body["type"] == "review.needed"
    assert body["tenant_id"] == "acme"
    assert body["project_id"] == pid
    assert body["event_id"] == event_id
    assert body["data"]["gate"] == 0
    assert body["data"]["node_id"] == "n1"

    [delivery] = store.list_notification_deliveries("acme", rule_id=rule.id)
    assert delivery.event_key == f"event:{event_id}"
    assert delivery.attempts == 3
    assert delivery.delivered_at is not None
    assert delivery.last_error is None


async def test_project_finished_goes_to_slack_and_email(
    store: Store,
    vault: Vault,
    receiver: Receiver,
    smtp: Smtp,
    make_notifier: NotifierFactory,
) -> None:
    vault.set("acme", "slack.url", receiver.url)
    store.create_notification_rule("acme", "project.finished", "slack", "", secret_name="slack.url")
    store.create_notification_rule("acme", "project.finished", "email", "ops@acme.test")
    pid = project(store, "p-report", "acme")
    store.add_event(pid, "project_succeeded", "done", tenant_id="acme")
    notifier = make_notifier()

    await run_until(notifier, lambda: receiver.count() == 1 and len(smtp.mailbox.messages) == 1)

    text = receiver.requests[0].json()["text"]
    assert "p-report" in text
    assert "succeeded" in text
    envelope, email = smtp.mailbox.messages[0]
    assert envelope.rcpt_tos == ["ops@acme.test"]
    assert "p-report" in email["Subject"]
    body = email.get_body()
    assert body is not None
    assert "p-report" in body.get_content()
    await run_until(
        notifier,
        lambda: {d.status for d in store.list_notification_deliveries("acme")} == {"delivered"},
    )


async def test_budget_warning(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    store.create_notification_rule("acme", "budget.warning", "webhook", receiver.url)
    pid = project(store, "p-budget", "acme")
    store.add_event(
        pid,
        "budget_warning",
        "budget at 83%",
        data={"month": "2026-11", "used_fraction": 0.83},
        tenant_id="acme",
    )
    await run_until(make_notifier(), lambda: receiver.count() == 1)
    body = receiver.requests[0].json()
    assert body["type"] == "budget.warning"
    assert body["data"]["used_fraction"] == 0.83
    assert "83%" in body["summary"]


async def test_a_4xx_is_a_permanent_failure(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    receiver.status = 404
    store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    pid = project(store, "p-404", "acme")
    store.add_event(pid, "project_failed", "boom", tenant_id="acme")
    notifier = make_notifier()
    await run_until(
        notifier,
        lambda: [d.status for d in store.list_notification_deliveries("acme")] == ["failed"],
    )
    for _ in range(5):
        await notifier.run_once()
    assert receiver.count() == 1
    [delivery] = store.list_notification_deliveries("acme")
    assert delivery.attempts == 1
    assert delivery.last_error is not None
    assert "HTTP 404" in delivery.last_error


async def test_gives_up_after_max_attempts(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    receiver.status = 503
    store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    pid = project(store, "p-503", "acme")
    store.add_event(pid, "project_failed", "boom", tenant_id="acme")
    notifier = make_notifier(max_attempts=3, backoff_base_s=0.01)
    await run_until(
        notifier,
        lambda: [d.status for d in store.list_notification_deliveries("acme")] == ["failed"],
    )
    assert receiver.count() == 3
    [delivery] = store.list_notification_deliveries("acme")
    assert delivery.attempts == 3
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("gave up after 3 attempts")


async def test_backoff_grows_and_is_capped(make_notifier: NotifierFactory) -> None:
    notifier = make_notifier(backoff_base_s=1.0, backoff_max_s=10.0)
    assert [notifier.backoff(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_a_tenant_never_receives_another_tenants_events(
    store: Store,
    receiver: Receiver,
    other_receiver: Receiver,
    make_notifier: NotifierFactory,
) -> None:
    store.create_notification_rule("acme", "review.needed", "webhook", receiver.url)
    store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    store.create_notification_rule("other", "review.needed", "webhook", other_receiver.url)
    theirs = project(store, "p-theirs", "other")
    store.add_event(
        theirs, "review_requested", "r", node_id="n1", data={"gate": 0}, tenant_id="other"
    )
    store.add_event(theirs, "project_succeeded", "done", tenant_id="other")
    mine = project(store, "p-mine", "acme")
    store.add_event(mine, "project_succeeded", "done", tenant_id="acme")
    notifier = make_notifier()

    await run_until(notifier, lambda: receiver.count() == 1 and other_receiver.count() == 1)
    for _ in range(3):
        await notifier.run_once()

    assert [r.json()["project_id"] for r in receiver.requests] == ["p-mine"]
    assert [r.json()["project_id"] for r in other_receiver.requests] == ["p-theirs"]
    assert {r.json()["tenant_id"] for r in receiver.requests} == {"acme"}
    assert {d.tenant_id for d in store.list_notification_deliveries("acme")} == {"acme"}
    assert len(store.list_notification_deliveries("other")) == 1


async def test_two_notifiers_and_reruns_deliver_once(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    for n in range(5):
        pid = project(store, f"p-{n}", "acme")
        store.add_event(pid, "project_succeeded", "done", tenant_id="acme")
    first, second = make_notifier(batch_size=2), make_notifier(batch_size=2)

    def all_delivered() -> bool:
        found = store.list_notification_deliveries("acme")
        return len(found) == 5 and {d.status for d in found} == {"delivered"}

    deadline = time.monotonic() + 5
    while not all_delivered():
        assert time.monotonic() < deadline, "not delivered in time"
        await asyncio.gather(first.run_once(), second.run_once())
    # The cursor moving back (a crash before it was saved) re-reads events, but the unique
    # event_key means nothing is owed twice.
    cursor = store.event_cursor("notify")
    assert store.advance_event_cursor("notify", cursor, 0)
    for _ in range(3):
        await asyncio.gather(first.run_once(), second.run_once())

    assert receiver.count() == 5
    assert sorted(r.json()["project_id"] for r in receiver.requests) == [f"p-{n}" for n in range(5)]
    assert len(store.list_notification_deliveries("acme")) == 5


async def test_rules_only_get_events_from_after_they_were_created(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    pid = project(store, "p-old", "acme")
    store.add_event(pid, "project_succeeded", "old news", tenant_id="acme")
    store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    paused = store.create_notification_rule("acme", "project.finished", "webhook", receiver.url)
    store.set_notification_rule_enabled("acme", paused.id, False)
    new = project(store, "p-new", "acme")
    store.add_event(new, "project_succeeded", "fresh", tenant_id="acme")
    notifier = make_notifier()
    await run_until(notifier, lambda: receiver.count() == 1)
    for _ in range(3):
        await notifier.run_once()
    assert [r.json()["project_id"] for r in receiver.requests] == ["p-new"]
    assert store.list_notification_deliveries("acme", rule_id=paused.id) == []


async def test_missing_secret_is_retried_with_a_hint(
    store: Store, vault: Vault, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    store.create_notification_rule(
        "acme", "project.finished", "webhook", receiver.url, secret_name="hooks.missing"
    )
    pid = project(store, "p-secret", "acme")
    store.add_event(pid, "project_succeeded", "done", tenant_id="acme")
    notifier = make_notifier(backoff_base_s=0.01)
    await notifier.run_once()
    [delivery] = store.list_notification_deliveries("acme")
    assert delivery.status == "pending"
    assert delivery.last_error is not None
    assert "soma secrets set acme hooks.missing" in delivery.last_error
    vault.set("acme", "hooks.missing", SECRET)  # fixed: the next attempt gets through
    await run_until(notifier, lambda: receiver.count() == 1)
    verify(SECRET, receiver.requests[0].body, receiver.requests[0].headers["X-Soma-Signature"])


async def test_run_loop_delivers_and_stops(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    store.create_notification_rule("acme", "review.needed", "webhook", receiver.url)
    stop = asyncio.Event()
    task = asyncio.create_task(make_notifier().run(stop))
    pid = project(store, "p-loop", "acme")
    store.add_event(pid, "review_requested", "r", node_id="n1", data={"gate": 1}, tenant_id="acme")
    await wait_for(lambda: receiver.count() == 1)
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_send_test_goes_straight_to_the_rule(
    store: Store, receiver: Receiver, make_notifier: NotifierFactory
) -> None:
    rule = store.create_notification_rule("acme", "review.needed", "webhook", receiver.url)
    sent = await make_notifier().send_test("acme", rule.id)
    assert sent.type == "review.needed"
    assert receiver.requests[0].json()["data"] == {"test": True}
    assert store.list_notification_deliveries("acme") == []


def test_build_notifier_follows_the_setting(store: Store) -> None:
    assert build_notifier(store, Settings(notifications=False), KEY) is None
    notifier = build_notifier(store, Settings(notifications=True), KEY)
    assert isinstance(notifier, Notifier)
    asyncio.run(notifier.aclose())
