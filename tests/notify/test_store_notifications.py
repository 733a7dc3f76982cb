"""The store's rules and deliveries outbox: tenant scoping, idempotent enqueue, claims with
leases, retries and giving up."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from soma.errors import NotFound, SomaError
from soma.store import Store
from soma.store.tables import utcnow
from tests.store.conftest import postgres_database, postgres_url

HOOK = "https://example.com/hooks/soma"
_PG_FIXTURES = (postgres_database, postgres_url)  # used by name below
BOTH = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest, migrated_db: Path, tmp_path: Path) -> Iterator[Store]:
    """SQLite, or PostgreSQL for the tests marked ``BOTH`` (skipped when unreachable): the
    outbox's insert-or-ignore and compare-and-set claims differ by dialect."""
    if getattr(request, "param", "sqlite") == "sqlite":
        path = tmp_path / "soma.db"
        shutil.copyfile(migrated_db, path)
        with Store.open(f"sqlite:///{path}") as opened:
            yield opened
        return
    with Store.open(request.getfixturevalue("postgres_url")) as opened:
        opened.create_tenant("acme", "Acme")
        opened.create_tenant("other", "Other")
        yield opened


def test_rules_are_scoped_by_tenant(store: Store) -> None:
    mine = store.create_notification_rule("acme", "review.needed", "webhook", HOOK, secret_name="s")
    theirs = store.create_notification_rule("other", "review.needed", "email", "ops@other.test")
    assert [r.id for r in store.list_notification_rules("acme")] == [mine.id]
    assert [r.id for r in store.list_notification_rules("other")] == [theirs.id]
    assert store.get_notification_rule("acme", mine.id) == mine
    with pytest.raises(NotFound, match="soma notify list"):
        store.get_notification_rule("acme", theirs.id)
    with pytest.raises(NotFound):
        store.delete_notification_rule("acme", theirs.id)
    with pytest.raises(NotFound):
        store.set_notification_rule_enabled("acme", theirs.id, False)
    assert store.get_notification_rule("other", theirs.id).enabled


def test_filters_disable_and_delete(store: Store) -> None:
    review = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    finished = store.create_notification_rule("acme", "project.finished", "webhook", HOOK)
    assert store.list_notification_rules("acme", event_type="project.finished") == [finished]
    paused = store.set_notification_rule_enabled("acme", review.id, False)
    assert not paused.enabled
    assert store.list_notification_rules("acme", enabled_only=True) == [finished]
    store.delete_notification_rule("acme", finished.id)
    assert [r.id for r in store.list_notification_rules("acme")] == [review.id]


@pytest.mark.parametrize(
    ("event_type", "channel", "target", "secret", "message"),
    [
        ("review.wanted", "webhook", HOOK, None, "unknown notification event type"),
        ("review.needed", "pager", HOOK, None, "unknown notification channel"),
        ("review.needed", "webhook", "ftp://example.com", None, "invalid webhook URL"),
        ("review.needed", "webhook", "/relative", None, "invalid webhook URL"),
        ("review.needed", "slack", "", None, "invalid Slack"),
        ("review.needed", "email", "not-an-address", None, "invalid email"),
    ],
)
def test_invalid_rules_are_refused(
    store: Store, event_type: str, channel: str, target: str, secret: str | None, message: str
) -> None:
    with pytest.raises(SomaError, match=message):
        store.create_notification_rule("acme", event_type, channel, target, secret_name=secret)


def test_slack_rule_may_keep_its_url_in_a_secret(store: Store) -> None:
    rule = store.create_notification_rule("acme", "budget.warning", "slack", "", secret_name="s")
    assert rule.target == ""
    assert rule.secret_name == "s"


def test_unknown_tenant_is_refused(store: Store) -> None:
    with pytest.raises(NotFound, match="create-tenant"):
        store.create_notification_rule("nobody", "review.needed", "webhook", HOOK)


@BOTH
def test_enqueue_is_idempotent_per_rule_and_event_key(store: Store) -> None:
    a = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    b = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    payload = {"type": "review.needed"}
    assert store.enqueue_notification("acme", a.id, "event:1", "review.needed", payload)
    assert not store.enqueue_notification("acme", a.id, "event:1", "review.needed", payload)
    assert store.enqueue_notification("acme", b.id, "event:1", "review.needed", payload)
    assert len(store.list_notification_deliveries("acme")) == 2
    assert store.list_notification_deliveries("other") == []


@BOTH
def test_claim_deliver_and_stale_attempts(store: Store) -> None:
    rule = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    store.enqueue_notification("acme", rule.id, "event:1", "review.needed", {"n": 1})
    [claimed] = store.claim_notifications(10)
    assert claimed.status == "sending"
    assert claimed.attempts == 1
    assert claimed.payload == {"n": 1}
    assert store.claim_notifications(10) == []  # leased to us
    assert not store.mark_notification_delivered(claimed.id, attempt=2)
    assert store.mark_notification_delivered(claimed.id, attempt=1)
    done = store.get_notification_delivery("acme", claimed.id)
    assert done.status == "delivered"
    assert done.delivered_at is not None
    assert store.claim_notifications(10) == []
    with pytest.raises(NotFound):
        store.get_notification_delivery("other", claimed.id)


@BOTH
def test_expired_lease_is_claimed_again_and_the_old_attempt_loses(store: Store) -> None:
    rule = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    store.enqueue_notification("acme", rule.id, "event:1", "review.needed", {})
    [first] = store.claim_notifications(10, lease=timedelta(0))
    [second] = store.claim_notifications(10)  # the first claimer "died"
    assert second.id == first.id
    assert second.attempts == 2
    assert not store.mark_notification_delivered(first.id, attempt=first.attempts)
    assert store.mark_notification_delivered(second.id, attempt=second.attempts)


@BOTH
def test_retry_later_then_give_up(store: Store) -> None:
    rule = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    store.enqueue_notification("acme", rule.id, "event:1", "review.needed", {})
    [claimed] = store.claim_notifications(10)
    later = utcnow() + timedelta(hours=1)
    assert store.mark_notification_failed(claimed.id, attempt=1, error="HTTP 500", retry_at=later)
    pending = store.get_notification_delivery("acme", claimed.id)
    assert pending.status == "pending"
    assert pending.last_error == "HTTP 500"
    assert pending.next_attempt_at == later
    assert store.claim_notifications(10) == []  # not due yet

    store.enqueue_notification("acme", rule.id, "event:2", "review.needed", {})
    [again] = store.claim_notifications(10)
    assert again.event_key == "event:2"
    assert store.mark_notification_failed(again.id, attempt=1, error="HTTP 404", retry_at=None)
    assert store.list_notification_deliveries("acme", status="failed")[0].id == again.id
    assert [d.event_key for d in store.list_notification_deliveries("acme")] == [
        "event:2",
        "event:1",
    ]


def test_removing_a_rule_gives_up_what_it_is_owed(store: Store) -> None:
    rule = store.create_notification_rule("acme", "review.needed", "webhook", HOOK)
    store.enqueue_notification("acme", rule.id, "event:1", "review.needed", {})
    store.delete_notification_rule("acme", rule.id)
    [owed] = store.list_notification_deliveries("acme", rule_id=rule.id)
    assert owed.status == "failed"
    assert owed.last_error == "the rule was removed"
    assert store.claim_notifications(10) == []
