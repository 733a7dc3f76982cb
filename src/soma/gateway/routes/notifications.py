"""The caller's tenant's notification rules and their deliveries (see docs/notifications.md).

Rules name vault secrets (a webhook's HMAC key, a Slack incoming-webhook URL) by name only:
no route accepts or returns a secret's value, and a rule may name a secret that is not set
yet, since the notifier reads it when it delivers.

Webhook and Slack URLs are called from the server (and ``…/test`` calls them right away), so
these routes need ``notifications:manage``, which only admins hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from soma.errors import SomaError
from soma.gateway.auth import require, services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.notify import DeliveryError, Notifier
from soma.secrets import check_name
from soma.store.notifications import (
    ChannelKind,
    DeliveryStatus,
    NotificationDeliveryRecord,
    NotificationRuleRecord,
    NotificationType,
    check_rule,
)

router = APIRouter(prefix="/api/v1", tags=["notifications"])

Svc = Annotated[Services, Depends(services)]
Manager = Annotated[Principal, Depends(require(Permission.NOTIFICATIONS_MANAGE))]


class RuleIn(BaseModel):
    """A new rule: events of ``event_type`` go to ``channel`` at ``target``."""

    model_config = ConfigDict(extra="forbid")

    event_type: NotificationType
    channel: ChannelKind
    target: str = Field(
        default="",
        max_length=2048,
        description="webhook / Slack: an http(s) URL; email: addresses separated by commas."
        " Empty for a Slack rule whose URL is the secret's value.",
    )
    secret_name: str | None = Field(
        default=None,
        max_length=128,
        description="A vault secret of the tenant, by name: the webhook's HMAC signing key, or"
        " the Slack incoming-webhook URL. Read at delivery time, so it may be set later.",
    )


class DeliveryOut(BaseModel):
    """One notification owed to a rule. The payload is left out: ``summary`` says what it is."""

    id: int
    rule_id: str
    event_key: str
    event_type: str
    summary: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: NotificationDeliveryRecord) -> DeliveryOut:
        summary = delivery.payload.get("summary")
        return cls(
            id=delivery.id,
            rule_id=delivery.rule_id,
            event_key=delivery.event_key,
            event_type=delivery.event_type,
            summary=summary if isinstance(summary, str) else None,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
        )


class TestResult(BaseModel):
    """Whether the sample notification got through; ``error`` says why not (host only)."""

    delivered: bool
    error: str | None = None
    retryable: bool | None = Field(
        default=None, description="When not delivered: whether trying again could help."
    )


@router.get("/notifications/rules", summary="The tenant's notification rules, oldest first")
async def list_rules(who: Manager, svc: Svc) -> list[NotificationRuleRecord]:
    return await asyncio.to_thread(svc.store.list_notification_rules, who.tenant_id)


@router.post(
    "/notifications/rules",
    status_code=201,
    summary="Add a rule: one notification type to one webhook, Slack channel or email list",
)
async def create_rule(body: RuleIn, who: Manager, svc: Svc) -> NotificationRuleRecord:
    _check(body)
    return await asyncio.to_thread(
        lambda: svc.store.create_notification_rule(
            who.tenant_id, body.event_type, body.channel, body.target, secret_name=body.secret_name
        )
    )


@router.delete(
    "/notifications/rules/{rule_id}",
    status_code=204,
    summary="Remove a rule; its delivery history stays, owed deliveries are given up",
)
async def delete_rule(rule_id: str, who: Manager, svc: Svc) -> Response:
    await asyncio.to_thread(svc.store.delete_notification_rule, who.tenant_id, rule_id)
    return Response(status_code=204)


@router.post(
    "/notifications/rules/{rule_id}/test",
    summary="Send a sample notification through a rule now and say whether it got through",
)
async def test_rule(rule_id: str, who: Manager, svc: Svc) -> TestResult:
    # Checked first so that another tenant's (or no) rule is a 404, never a send.
    await asyncio.to_thread(svc.store.get_notification_rule, who.tenant_id, rule_id)
    notifier = Notifier(svc.store, svc.settings, svc.secret_key)
    try:
        await notifier.send_test(who.tenant_id, rule_id)
    except DeliveryError as exc:
        return TestResult(delivered=False, error=str(exc), retryable=exc.retryable)
    finally:
        await notifier.aclose()
    return TestResult(delivered=True)


@router.get(
    "/notifications/deliveries", summary="The tenant's recent notification deliveries, newest first"
)
async def list_deliveries(
    who: Manager,
    svc: Svc,
    status: DeliveryStatus | None = None,
    rule_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryOut]:
    deliveries = await asyncio.to_thread(
        lambda: svc.store.list_notification_deliveries(
            who.tenant_id, rule_id=rule_id, status=status, limit=limit
        )
    )
    return [DeliveryOut.of(d) for d in deliveries]


def _check(body: RuleIn) -> None:
    """The store's checks, answered as 422s naming the field, like schema violations."""
    if body.secret_name is not None:
        _field("secret_name", check_name, body.secret_name)
        if body.channel == "email":
            _invalid("secret_name", "a secret does not apply to email rules")
    _field("target", check_rule, body.event_type, body.channel, body.target, body.secret_name)


def _field(name: str, check: Callable[..., object], *args: object) -> None:
    try:
        check(*args)
    except SomaError as exc:
        _invalid(name, str(exc))


def _invalid(name: str, message: str) -> None:
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("body", name), "msg": message, "input": None}]
    )
