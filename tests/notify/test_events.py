"""Store events → notification types and payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from soma.notify.events import notification_for, render_text
from soma.store import EventRecord

WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def event(
    kind: str, message: str = "", node_id: str | None = None, data: Any = None
) -> EventRecord:
    return EventRecord(
        id=7,
        project_id="p1",
        tenant_id="acme",
        node_id=node_id,
        kind=kind,
        message=message,
        data=data,
        created_at=WHEN,
    )


def test_review_requested_is_review_needed() -> None:
    found = notification_for(event("review_requested", "please review", "n1", {"gate": 0}))
    assert found is not None
    assert found.type == "review.needed"
    assert found.project_id == "p1"
    assert found.tenant_id == "acme"
    assert found.event_id == 7
    assert found.data == {"gate": 0, "node_id": "n1", "message": "please review"}
    assert "p1" in found.summary
    assert "n1" in found.summary
    body = found.model_dump(mode="json")
    assert body["occurred_at"] == "2026-11-26T12:00:00Z"
    assert body["version"] == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("project_succeeded", "succeeded"),
        ("project_failed", "failed"),
        ("project_cancelled", "cancelled"),
    ],
)
def test_project_end_is_project_finished_with_status(kind: str, status: str) -> None:
    found = notification_for(event(kind, "it ended"))
    assert found is not None
    assert found.type == "project.finished"
    assert found.data["status"] == status
    assert status in found.summary


def test_budget_warning() -> None:
    found = notification_for(
        event("budget_warning", data={"month": "2026-11", "used_fraction": 0.83})
    )
    assert found is not None
    assert found.type == "budget.warning"
    assert found.summary == "Tenant acme has used 83% of its budget for 2026-11"
    assert found.data["used_fraction"] == 0.83


@pytest.mark.parametrize("kind", ["node_started", "tool_called", "project_started", "usage"])
def test_other_kinds_raise_nothing(kind: str) -> None:
    assert notification_for(event(kind)) is None


def test_render_text_lists_summary_and_details() -> None:
    found = notification_for(event("review_requested", "look", "n1", {"gate": 2}))
    assert found is not None
    text = render_text(found.model_dump(mode="json"))
    lines = text.splitlines()
    assert lines[0] == found.summary
    assert "project: p1" in lines
    assert "gate: 2" in lines
    assert "message: look" in lines
