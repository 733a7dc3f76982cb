"""Notification rules and the deliveries outbox.

A rule says "events of this type, in this tenant, go to this channel". The notifier turns each
matching event into one row of ``notification_deliveries`` (the outbox) and then works the
outbox: a row is *claimed* (status ``sending``, with a lease), sent, and marked ``delivered``,
rescheduled (``pending`` with a later ``next_attempt_at``) or given up (``failed``).

Why an outbox rather than sending straight from the event: the unique ``(rule_id,
event_key)`` makes enqueueing idempotent, so two notifiers (or one that crashed before moving
its cursor) never owe the same notification twice, and a row that was claimed by a process
that then died becomes due again when its lease runs out.

Every method that a tenant-facing caller uses takes ``tenant_id`` and scopes its query by it;
only :meth:`NotificationsMixin.claim_notifications` and the ``mark_*`` methods, which the
notifier worker calls with ids it has just claimed, work across tenants.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from soma.errors import NotFound, SomaError
from soma.store.tables import NotificationDelivery, NotificationRule, Tenant, utcnow

NotificationType = Literal["review.needed", "project.finished", "budget.warning"]
ChannelKind = Literal["webhook", "slack", "email"]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]

NOTIFICATION_TYPES: tuple[str, ...] = get_args(NotificationType)
CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKind)

# How long a claimed delivery belongs to the process that claimed it. A process that dies
# mid-send leaves the row ``sending``; once the lease is over it is due again.
DEFAULT_LEASE = timedelta(minutes=2)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class NotificationRuleRecord(_Record):
    """Events of ``event_type`` in ``tenant_id`` go to ``channel`` at ``target``.

    ``secret_name`` names a vault secret of the tenant: the HMAC key of a webhook, or the
    incoming-webhook URL of a Slack rule (then ``target`` is empty, as the URL is a credential).
    """

    id: str
    tenant_id: str
    event_type: NotificationType
    channel: ChannelKind
    target: str
    secret_name: str | None
    enabled: bool
    created_at: datetime


class NotificationDeliveryRecord(_Record):
    """One notification owed to one rule, and how its sending went so far."""

    id: int
    tenant_id: str
    rule_id: str
    event_key: str
    event_type: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def check_rule(
    event_type: str, channel: str, target: str, secret_name: str | None
) -> tuple[NotificationType, ChannelKind]:
    """Refuse a rule that could never be delivered, with what to change."""
    if event_type not in NOTIFICATION_TYPES:
        raise SomaError(
            f"unknown notification event type {event_type!r}",
            hint=f"use one of: {', '.join(NOTIFICATION_TYPES)}",
        )
    if channel not in CHANNEL_KINDS:
        raise SomaError(
            f"unknown notification channel {channel!r}",
            hint=f"use one of: {', '.join(CHANNEL_KINDS)}",
        )
    if channel == "webhook":
        _check_url(target, "webhook")
    elif channel == "slack":
        if secret_name is None or target:
            _check_url(target, "Slack incoming-webhook")
    else:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not addresses or any("@" not in a or " " in a for a in addresses):
            raise SomaError(
                f"invalid email target {target!r}",
                hint="give one address, or several separated by commas (ops@example.com)",
            )
    return event_type, channel  # type: ignore[return-value]


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SomaError(
            f"invalid {what} URL {url!r}",
            hint="give an absolute http(s) URL, e.g. https://example.com/hooks/soma",
        )


class NotificationsMixin:
    """The notification methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- rules ---------------------------------------------------------------------------------

    def create_notification_rule(
        self,
        tenant_id: str,
        event_type: str,
        channel: str,
        target: str,
        *,
        secret_name: str | None = None,
    ) -> NotificationRuleRecord:
        """Add a rule to an existing tenant; it receives events that happen from now on."""
        kind, via = check_rule(event_type, channel, target, secret_name)
        with self._write() as session:
            if session.get(Tenant, tenant_id) is None:
                raise NotFound(
                    f"no tenant '{tenant_id}'",
                    hint=f"create it with `soma admin create-tenant {tenant_id}`",
                )
            rule = NotificationRule(
                id=uuid.uuid4().hex,
                tenant_id=tenant_id,
                event_type=kind,
                channel=via,
                target=target,
                secret_name=secret_name,
                enabled=True,
                created_at=utcnow(),
            )
            session.add(rule)
            session.flush()
            return NotificationRuleRecord.model_validate(rule)

    def get_notification_rule(self, tenant_id: str, rule_id: str) -> NotificationRuleRecord:
        """The tenant's rule, or NotFound (also for another tenant's rule)."""
        with self._read() as session:
            return NotificationRuleRecord.model_validate(_rule(session, tenant_id, rule_id))

    def list_notification_rules(
        self, tenant_id: str, *, event_type: str | None = None, enabled_only: bool = False
    ) -> list[NotificationRuleRecord]:
        """The tenant's rules, oldest first."""
        query = select(NotificationRule).where(NotificationRule.tenant_id == tenant_id)
        if event_type is not None:
            query = query.where(NotificationRule.event_type == event_type)
        if enabled_only:
            query = query.where(NotificationRule.enabled.is_(True))
        query = query.order_by(NotificationRule.created_at, NotificationRule.id)
        with self._read() as session:
            return [NotificationRuleRecord.model_validate(r) for r in session.scalars(query)]

    def set_notification_rule_enabled(
        self, tenant_id: str, rule_id: str, enabled: bool
    ) -> NotificationRuleRecord:
        """Pause or resume a rule; a paused rule gets no new deliveries and its owed ones fail."""
        with self._write() as session:
            rule = _rule(session, tenant_id, rule_id)
            rule.enabled = enabled
            session.flush()
            return NotificationRuleRecord.model_validate(rule)

    def delete_notification_rule(self, tenant_id: str, rule_id: str) -> None:
        """Remove a rule; its delivery history stays, anything still owed is given up."""
        with self._write() as session:
            session.delete(_rule(session, tenant_id, rule_id))
            session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.tenant_id == tenant_id,
                    NotificationDelivery.rule_id == rule_id,
                    NotificationDelivery.status.in_(("pending", "sending")),
                )
                .values(status="failed", last_error="the rule was removed")
                .execution_options(synchronize_session=False)
            )

    # -- deliveries ----------------------------------------------------------------------------

    def enqueue_notification(
        self,
        tenant_id: str,
        rule_id: str,
        event_key: str,
        event_type: str,
        payload: dict[str, Any],
        *,
        due_at: datetime | None = None,
    ) -> bool:
        """Owe ``payload`` to the rule; True if enqueued, False if ``event_key`` already was.

        Insert-or-ignore on the unique ``(rule_id, event_key)``, so concurrent notifiers that
        read the same event agree without locking each other out.
        """
        now = utcnow()
        values = {
            "tenant_id": tenant_id,
            "rule_id": rule_id,
            "event_key": event_key,
            "event_type": event_type,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": due_at or now,
            "created_at": now,
        }
        with self._write() as session:
            name = session.get_bind().dialect.name
            if name in ("postgresql", "sqlite"):
                # RETURNING, not rowcount: psycopg reports -1 for an ignored conflict.
                insert_ = pg_insert if name == "postgresql" else sqlite_insert
                statement = insert_(NotificationDelivery).values(values).on_conflict_do_nothing()
                found = session.execute(statement.returning(NotificationDelivery.id)).first()
                return found is not None
            taken = session.scalar(  # pragma: no cover - other backends
                select(NotificationDelivery.id).where(
                    NotificationDelivery.rule_id == rule_id,
                    NotificationDelivery.event_key == event_key,
                )
            )
            if taken is not None:  # pragma: no cover
                return False
            session.execute(insert(NotificationDelivery).values(values))  # pragma: no cover
            return True  # pragma: no cover

    def claim_notifications(
        self, limit: int = 50, *, lease: timedelta = DEFAULT_LEASE
    ) -> list[NotificationDeliveryRecord]:
        """Take up to ``limit`` due deliveries of any tenant for sending (worker only).

        Each claimed row becomes ``sending``, its ``attempts`` goes up by one (the attempt now
        made) and it is due again after ``lease``, in case this process dies while sending.
        A row is claimed with a compare-and-set, so two notifiers never send the same attempt.
        """
        now = utcnow()
        due = (
            NotificationDelivery.status.in_(("pending", "sending")),
            NotificationDelivery.next_attempt_at <= now,
        )
        query = (
            select(NotificationDelivery.id, NotificationDelivery.attempts)
            .where(*due)
            .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers anyway
        )
        with self._write() as session:
            claimed: list[int] = []
            for delivery_id, attempts in session.execute(query).all():
                moved = session.execute(
                    update(NotificationDelivery)
                    .where(
                        NotificationDelivery.id == delivery_id,
                        NotificationDelivery.attempts == attempts,
                        *due,
                    )
                    .values(status="sending", attempts=attempts + 1, next_attempt_at=now + lease)
                    .execution_options(synchronize_session=False)
                )
                if getattr(moved, "rowcount", 0):
                    claimed.append(delivery_id)
            if not claimed:
                return []
            rows = session.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.id.in_(claimed))
                .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
                .execution_options(populate_existing=True)
            )
            return [NotificationDeliveryRecord.model_validate(r) for r in rows]

    def mark_notification_delivered(self, delivery_id: int, *, attempt: int) -> bool:
        """Record that ``attempt`` got through; False if that attempt no longer owns the row
        (its lease ran out and another process claimed it)."""
        return self._finish(
            delivery_id, attempt, status="delivered", delivered_at=utcnow(), last_error=None
        )

    def mark_notification_failed(
        self, delivery_id: int, *, attempt: int, error: str, retry_at: datetime | None
    ) -> bool:
        """Record a failed ``attempt``: due again at ``retry_at``, or given up when it is None."""
        if retry_at is None:
            return self._finish(delivery_id, attempt, status="failed", last_error=error[:2000])
        return self._finish(
            delivery_id,
            attempt,
            status="pending",
            next_attempt_at=retry_at,
            last_error=error[:2000],
        )

    def _finish(self, delivery_id: int, attempt: int, **values: Any) -> bool:
        with self._write() as session:
            moved = session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == delivery_id,
                    NotificationDelivery.attempts == attempt,
                    NotificationDelivery.status == "sending",
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(moved, "rowcount", 0))

    def get_notification_delivery(
        self, tenant_id: str, delivery_id: int
    ) -> NotificationDeliveryRecord:
        """The tenant's delivery, or NotFound."""
        query = select(NotificationDelivery).where(
            NotificationDelivery.id == delivery_id, NotificationDelivery.tenant_id == tenant_id
        )
        with self._read() as session:
            found = session.scalar(query)
            if found is None:
                raise NotFound(
                    f"no notification delivery {delivery_id} in tenant '{tenant_id}'",
                    hint=f"list them with `soma notify deliveries --tenant {tenant_id}`",
                )
            return NotificationDeliveryRecord.model_validate(found)

    def list_notification_deliveries(
        self,
        tenant_id: str,
        *,
        rule_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[NotificationDeliveryRecord]:
        """The tenant's deliveries, newest first."""
        query = select(NotificationDelivery).where(NotificationDelivery.tenant_id == tenant_id)
        if rule_id is not None:
            query = query.where(NotificationDelivery.rule_id == rule_id)
        if status is not None:
            query = query.where(NotificationDelivery.status == status)
        query = query.order_by(NotificationDelivery.id.desc()).limit(limit)
        with self._read() as session:
            return [NotificationDeliveryRecord.model_validate(d) for d in session.scalars(query)]

    def prune_notification_deliveries(self, tenant_id: str, *, before: datetime) -> int:
        """Forget the tenant's finished deliveries created before ``before``; how many."""
        with self._write() as session:
            result = session.execute(
                delete(NotificationDelivery)
                .where(
                    NotificationDelivery.tenant_id == tenant_id,
                    NotificationDelivery.created_at < before,
                    or_(
                        NotificationDelivery.status == "delivered",
                        NotificationDelivery.status == "failed",
                    ),
                )
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0))


def _rule(session: Session, tenant_id: str, rule_id: str) -> NotificationRule:
    query = select(NotificationRule).where(
        NotificationRule.id == rule_id, NotificationRule.tenant_id == tenant_id
    )
    rule = session.scalar(query)
    if rule is None:
        raise NotFound(
            f"no notification rule '{rule_id}' in tenant '{tenant_id}'",
            hint=f"list the tenant's rules with `soma notify list --tenant {tenant_id}`",
        )
    return rule
