"""Which store events are worth a notification, and what the notification says.

The events table is the product's history (dozens of kinds per project); tenants subscribe to
three coarse notification types instead, so that a webhook consumer has a small, stable
contract that does not change each time the orchestrator learns a new event kind:

==================  =========================================================
notification type   store event kinds
==================  =========================================================
review.needed       ``review_requested``
project.finished    ``project_succeeded``, ``project_failed``, ``project_cancelled``
budget.warning      ``budget_warning``
==================  =========================================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from soma.store import EventRecord
from soma.store.notifications import NotificationType
from soma.store.tables import utcnow

_FINISHED = {
    "project_succeeded": "succeeded",
    "project_failed": "failed",
    "project_cancelled": "cancelled",
}


class Notification(BaseModel):
    """What every channel is given: the JSON body of a webhook, rendered as text elsewhere.

    ``version`` lets the payload grow: fields are only ever added within a version.
    """

    model_config = ConfigDict(frozen=True)

    version: int = 1
    type: NotificationType
    tenant_id: str
    project_id: str | None
    event_id: int | None
    occurred_at: datetime
    summary: str
    data: dict[str, Any]


def notification_for(event: EventRecord) -> Notification | None:
    """The notification an event raises, or None for the kinds nobody subscribes to."""
    data = dict(event.data or {})
    if event.kind == "review_requested":
        if event.node_id is not None:
            data.setdefault("node_id", event.node_id)
        where = f" (node {event.node_id})" if event.node_id else ""
        return _make(
            event, "review.needed", f"Project {event.project_id} needs a review{where}", data
        )
    if event.kind in _FINISHED:
        status = _FINISHED[event.kind]
        data["status"] = status
        summary = f"Project {event.project_id} {status}"
        if status == "failed" and event.message:
            summary = f"{summary}: {event.message}"
        return _make(event, "project.finished", summary, data)
    if event.kind == "budget_warning":
        return _make(event, "budget.warning", _budget_summary(event.tenant_id, data), data)
    return None


def _make(
    event: EventRecord, kind: NotificationType, summary: str, data: dict[str, Any]
) -> Notification:
    if event.message:
        data.setdefault("message", event.message)
    return Notification(
        type=kind,
        tenant_id=event.tenant_id,
        project_id=event.project_id,
        event_id=event.id,
        occurred_at=event.created_at,
        summary=summary,
        data=data,
    )


def _budget_summary(tenant_id: str, data: dict[str, Any]) -> str:
    used = data.get("used_fraction")
    month = data.get("month")
    share = f"{used:.0%}" if isinstance(used, int | float) else "most"
    period = f" for {month}" if isinstance(month, str) else ""
    return f"Tenant {tenant_id} has used {share} of its budget{period}"


def render_text(payload: dict[str, Any]) -> str:
    """A notification as a few human lines (Slack, email): the summary, then the details."""
    summary = str(payload.get("summary") or payload.get("type") or "notification")
    details: dict[str, Any] = {
        "tenant": payload.get("tenant_id"),
        "project": payload.get("project_id"),
    }
    for key, value in (payload.get("data") or {}).items():
        details.setdefault(str(key), value)
    message = details.get("message")
    if isinstance(message, str) and message in summary:
        del details["message"]
    lines = [summary]
    lines.extend(f"{k}: {v}" for k, v in details.items() if v is not None and v != "")
    return "\n".join(lines)


def sample_notification(tenant_id: str, kind: NotificationType) -> Notification:
    """A made-up notification of ``kind``, for ``soma notify test``."""
    data: dict[str, Any] = {"test": True}
    summary = {
        "review.needed": "Project example needs a review (node n1) — test notification",
        "project.finished": "Project example succeeded — test notification",
        "budget.warning": f"Tenant {tenant_id} has used 80% of its budget — test notification",
    }[kind]
    return Notification(
        type=kind,
        tenant_id=tenant_id,
        project_id="example" if kind != "budget.warning" else None,
        event_id=None,
        occurred_at=utcnow(),
        summary=summary,
        data=data,
    )
