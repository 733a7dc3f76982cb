"""Budgets: refused once used up, a warning event once per month when crossing the fraction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from soma.errors import QuotaExceeded
from soma.metering.budgets import budget_status, ensure_budget, warn_if_crossed
from soma.metering.periods import month_bounds
from soma.store import Store

NOV = datetime(2026, 11, 15, tzinfo=UTC)


def _use(store: Store, key: str, tokens: int, cost: int = 0, at: datetime = NOV) -> None:
    store.record_usage(
        "acme",
        key,
        "model",
        project_id="p",
        model="m",
        input_tokens=tokens,
        cost_micros=cost,
        at=at,
    )


@pytest.fixture
def acme(store: Store) -> Store:
    store.create_tenant("acme", "Acme")
    store.create_project("p", "a goal", tenant_id="acme")
    return store


def test_without_a_budget_nothing_is_refused(acme: Store) -> None:
    _use(acme, "k1", 10**9)
    status = ensure_budget(acme, "acme", NOV)
    assert status.budget is None
    assert not status.exhausted


def test_a_used_up_budget_refuses_and_says_how_much(acme: Store) -> None:
    acme.set_budget("acme", monthly_tokens=1000, monthly_cost_micros=None)
    _use(acme, "k1", 600)
    assert ensure_budget(acme, "acme", NOV).used_fraction == pytest.approx(0.6)
    _use(acme, "k2", 400)
    with pytest.raises(QuotaExceeded, match="1,000 of 1,000 tokens"):
        ensure_budget(acme, "acme", NOV)
    december = datetime(2026, 12, 1, tzinfo=UTC)
    assert not budget_status(acme, "acme", december).exhausted, "a new month starts afresh"


def test_the_cost_limit_counts_too(acme: Store) -> None:
    acme.set_budget("acme", monthly_tokens=None, monthly_cost_micros=2_000_000)
    _use(acme, "k1", 1, cost=2_000_000)
    with pytest.raises(QuotaExceeded, match=r"\$2.0000 of \$2.0000"):
        ensure_budget(acme, "acme", NOV)


def test_the_warning_is_written_once_per_month(acme: Store) -> None:
    acme.set_budget("acme", monthly_tokens=1000, monthly_cost_micros=None, warn_fraction=0.5)
    _use(acme, "k1", 400)
    assert not warn_if_crossed(acme, "acme", "p", NOV)
    _use(acme, "k2", 200)
    assert warn_if_crossed(acme, "acme", "p", NOV)
    assert not warn_if_crossed(acme, "acme", "p", NOV)
    warnings = [e for e in acme.list_events("p", tenant_id="acme") if e.kind == "budget_warning"]
    assert len(warnings) == 1
    assert warnings[0].data == {
        "month": "2026-11",
        "used_fraction": 0.6,
        "tokens": 600,
        "cost_micros": 0,
    }


def test_usage_is_recorded_once_per_key(acme: Store) -> None:
    assert acme.record_usage("acme", "same", "tool", project_id="p", tool="fs.write", quantity=1)
    assert not acme.record_usage("acme", "same", "tool", project_id="p", tool="fs.write")
    assert len(acme.usage_events("acme", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))) == 1
    start, end = month_bounds("2000-01")
    assert acme.usage_events("acme", start, end) == []


@pytest.mark.parametrize("month", ["2026-13", "26-11", "2026-1", "november", "0000-01", "3000-01"])
def test_months_are_yyyy_mm(month: str) -> None:
    with pytest.raises(Exception, match="YYYY-MM"):
        month_bounds(month)
