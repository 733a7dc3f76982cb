"""The notifier: tails the events table into the deliveries outbox, then works the outbox.

One pass (:meth:`Notifier.run_once`):

1. read events after the ``notify`` cursor, turn each into a notification
   (:func:`soma.notify.events.notification_for`) and enqueue one delivery per matching enabled
   rule of the event's tenant, keyed ``event:<event id>`` so a re-read never owes it twice;
   then move the cursor (compare-and-set: another notifier may have moved it, which is fine);
2. claim due deliveries and send them; a retryable failure is tried again after
   ``backoff_base_s * 2**(attempt-1)`` seconds (capped at ``backoff_max_s``, or later if the
   receiver sent ``Retry-After``), up to ``max_attempts``; then the delivery is ``failed``.

Delivery is at least once: a process that dies after sending but before recording it sends
again once its claim's lease runs out. Receivers de-duplicate on ``X-Soma-Delivery``.

Store calls are synchronous SQLAlchemy, so they run in worker threads to keep the event loop
of the process hosting the notifier (the gateway, a worker) responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from soma.errors import NotFound, SomaError
from soma.notify.channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    Message,
    SlackChannel,
    WebhookChannel,
)
from soma.notify.events import Notification, notification_for, sample_notification
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import EventRecord, Store
from soma.store.notifications import (
    DEFAULT_LEASE,
    NotificationDeliveryRecord,
    NotificationRuleRecord,
)
from soma.store.tables import utcnow

log = logging.getLogger("soma.notify")

CURSOR = "notify"
T = TypeVar("T")


@dataclass
class PassStats:
    """What one :meth:`Notifier.run_once` did."""

    events: int = 0
    enqueued: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


class Notifier:
    """Delivers the tenants' notification rules. Build it with :func:`build_notifier`."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        secret_key: bytes,
        *,
        channels: Mapping[str, Channel] | None = None,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        max_attempts: int = 8,
        batch_size: int = 100,
        concurrency: int = 8,
        poll_interval_s: float = 1.0,
        lease: timedelta = DEFAULT_LEASE,
        max_event_age: timedelta | None = timedelta(days=1),
    ) -> None:
        """``max_event_age``: events older than this are not notified at all (a notifier
        that was off for a week should not page anyone about last week); None: no limit."""
        if max_attempts < 1:
            raise SomaError("max_attempts must be at least 1", hint="the default is 8")
        self._store = store
        self._vault = Vault(store, secret_key)
        self._channels: dict[str, Channel] = (
            dict(channels)
            if channels is not None
            else {
                "webhook": WebhookChannel(),
                "slack": SlackChannel(),
                "email": EmailChannel.from_settings(settings),
            }
        )
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._concurrency = concurrency
        self._lease = lease
        self._max_event_age = max_event_age

    async def aclose(self) -> None:
        """Close the channels' connections."""
        for channel in self._channels.values():
            await channel.aclose()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run passes every ``poll_interval_s`` until ``stop`` is set, then close.

        A failing pass (database down, a bug) is logged and retried on the next tick, so the
        notifier never takes its host process down with it.
        """
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except Exception:
                    log.exception(
                        "notification pass failed; retrying in %.1f s", self.poll_interval_s
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.poll_interval_s)
        finally:
            await self.aclose()

    async def run_once(self) -> PassStats:
        """Enqueue deliveries for new events, then send what is due."""
        stats = PassStats()
        await self.enqueue_new_events(stats)
        await self.deliver_due(stats)
        return stats

    # -- events → outbox -----------------------------------------------------------------------

    async def enqueue_new_events(self, stats: PassStats | None = None) -> int:
        """Owe a delivery to each matching rule for every event after the cursor."""
        stats = stats or PassStats()
        while True:
            cursor = await self._call(self._store.event_cursor, CURSOR)
            events = await self._call(self._store.events_after, cursor, self.batch_size)
            if not events:
                return stats.enqueued
            for event in events:
                stats.events += 1
                stats.enqueued += await self._call(self._enqueue_event, event)
            moved = await self._call(
                self._store.advance_event_cursor, CURSOR, cursor, events[-1].id
            )
            if moved and len(events) < self.batch_size:
                return stats.enqueued
            # Not moved: another notifier got there first; re-read from where it got to.

    def _enqueue_event(self, event: EventRecord) -> int:
        notification = notification_for(event)
        if notification is None:
            return 0
        if self._max_event_age is not None and event.created_at < utcnow() - self._max_event_age:
            return 0
        rules = self._store.list_notification_rules(
            event.tenant_id, event_type=notification.type, enabled_only=True
        )
        payload = notification.model_dump(mode="json")
        enqueued = 0
        for rule in rules:
            if event.created_at < rule.created_at:
                continue  # a new rule does not receive what happened before it existed
            enqueued += self._store.enqueue_notification(
                rule.tenant_id, rule.id, f"event:{event.id}", notification.type, payload
            )
        return enqueued

    # -- outbox → channels ---------------------------------------------------------------------

    async def deliver_due(self, stats: PassStats | None = None) -> PassStats:
        """Claim due deliveries (one batch) and send them, a few at a time."""
        stats = stats or PassStats()
        claimed = await self._call(
            self._store.claim_notifications, self.batch_size, lease=self._lease
        )
        gate = asyncio.Semaphore(self._concurrency)

        async def one(delivery: NotificationDeliveryRecord) -> None:
            async with gate:
                outcome = await self._deliver(delivery)
            setattr(stats, outcome, getattr(stats, outcome) + 1)

        await asyncio.gather(*(one(d) for d in claimed))
        return stats

    async def _deliver(self, delivery: NotificationDeliveryRecord) -> str:
        try:
            rule = await self._call(
                self._store.get_notification_rule, delivery.tenant_id, delivery.rule_id
            )
        except NotFound:
            return await self._give_up(delivery, "the rule was removed")
        if not rule.enabled:
            return await self._give_up(delivery, "the rule is disabled")
        try:
            await self._send(rule, str(delivery.id), delivery.event_type, delivery.payload)
        except DeliveryError as exc:
            if not exc.retryable:
                return await self._give_up(delivery, str(exc))
            return await self._retry(delivery, str(exc), exc.retry_after_s)
        except Exception as exc:  # a bug in a channel must not wedge the outbox
            log.exception("notification delivery %s crashed", delivery.id)
            return await self._retry(delivery, f"{type(exc).__name__}: {exc}", None)
        await self._call(
            self._store.mark_notification_delivered, delivery.id, attempt=delivery.attempts
        )
        return "delivered"

    async def _send(
        self,
        rule: NotificationRuleRecord,
        delivery_id: str,
        event_type: str,
        payload: dict[str, Any],
    ) -> None:
        channel = self._channels.get(rule.channel)
        if channel is None:
            raise DeliveryError(
                f"no {rule.channel} channel is configured in this notifier", retryable=False
            )
        secret: str | None = None
        if rule.secret_name:
            try:
                secret = await self._call(self._vault.get, rule.tenant_id, rule.secret_name)
            except NotFound:
                raise DeliveryError(
                    f"tenant '{rule.tenant_id}' has no secret '{rule.secret_name}'",
                    retryable=True,
                    hint=f"set it with `soma secrets set {rule.tenant_id} {rule.secret_name}`",
                ) from None
        message = Message(
            delivery_id=delivery_id,
            event_type=event_type,
            payload=payload,
            target=rule.target,
            secret=secret,
        )
        await channel.send(message)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_base_s * 2 ** max(attempt - 1, 0), self.backoff_max_s))

    async def _retry(
        self, delivery: NotificationDeliveryRecord, error: str, retry_after_s: float | None
    ) -> str:
        if delivery.attempts >= self.max_attempts:
            return await self._give_up(
                delivery, f"gave up after {delivery.attempts} attempts: {error}"
            )
        delay = self.backoff(delivery.attempts)
        if retry_after_s is not None:
            delay = min(max(delay, retry_after_s), self.backoff_max_s)
        retry_at: datetime = utcnow() + timedelta(seconds=delay)
        log.info(
            "notification %s attempt %d failed (%s); retrying in %.1f s",
            delivery.id,
            delivery.attempts,
            error,
            delay,
        )
        await self._call(
            self._store.mark_notification_failed,
            delivery.id,
            attempt=delivery.attempts,
            error=error,
            retry_at=retry_at,
        )
        return "retrying"

    async def _give_up(self, delivery: NotificationDeliveryRecord, error: str) -> str:
        log.warning("notification %s failed for good: %s", delivery.id, error)
        await self._call(
            self._store.mark_notification_failed,
            delivery.id,
            attempt=delivery.attempts,
            error=error,
            retry_at=None,
        )
        return "failed"

    # -- operator tools ------------------------------------------------------------------------

    async def send_test(self, tenant_id: str, rule_id: str) -> Notification:
        """Send a sample notification through a rule right now, bypassing the outbox; raises
        :class:`DeliveryError` (or NotFound) so the operator sees what is wrong at once."""
        rule = await self._call(self._store.get_notification_rule, tenant_id, rule_id)
        notification = sample_notification(tenant_id, rule.event_type)
        await self._send(
            rule, f"test-{rule.id}", notification.type, notification.model_dump(mode="json")
        )
        return notification

    @staticmethod
    async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)


def build_notifier(store: Store, settings: Settings, secret_key: bytes) -> Notifier | None:
    """The notifier for this process, or None when ``SOMA_NOTIFICATIONS`` is off."""
    if not settings.notifications:
        return None
    return Notifier(store, settings, secret_key)
