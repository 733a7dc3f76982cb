"""Tenant budgets: monthly token and cost limits, checked before work starts.

Checked where work begins (a project's launch) and before every model call, so a project that
runs into the limit stops at its next call rather than at its end. Crossing the warning fraction
writes one ``budget_warning`` event per tenant and month, which notification rules can route.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from soma.errors import QuotaExceeded
from soma.metering.periods import month_bounds, month_of
from soma.metering.prices import usd
from soma.store import Store
from soma.store.metering import BudgetRecord, PeriodUsage
from soma.store.tables import utcnow


@dataclass(frozen=True)
class BudgetStatus:
    month: str
    budget: BudgetRecord | None
    usage: PeriodUsage

    @property
    def used_fraction(self) -> float:
        """The larger of tokens and cost used against their limits (0 without limits)."""
        fractions = [0.0]
        if self.budget and self.budget.monthly_tokens:
            fractions.append(self.usage.tokens / self.budget.monthly_tokens)
        if self.budget and self.budget.monthly_cost_micros:
            fractions.append(self.usage.cost_micros / self.budget.monthly_cost_micros)
        return max(fractions)

    @property
    def exhausted(self) -> bool:
        if self.budget is None:
            return False
        tokens, cost = self.budget.monthly_tokens, self.budget.monthly_cost_micros
        return (tokens is not None and self.usage.tokens >= tokens) or (
            cost is not None and self.usage.cost_micros >= cost
        )

    def describe(self) -> str:
        budget = self.budget
        parts = []
        if budget and budget.monthly_tokens is not None:
            parts.append(f"{self.usage.tokens:,} of {budget.monthly_tokens:,} tokens")
        if budget and budget.monthly_cost_micros is not None:
            parts.append(f"{usd(self.usage.cost_micros)} of {usd(budget.monthly_cost_micros)}")
        return ", ".join(parts) or "no budget set"


def budget_status(store: Store, tenant_id: str, now: datetime | None = None) -> BudgetStatus:
    month = month_of(now or utcnow())
    start, end = month_bounds(month)
    usage = store.period_usage(tenant_id, start, end)
    return BudgetStatus(month, store.get_budget(tenant_id), usage)


def ensure_budget(store: Store, tenant_id: str, now: datetime | None = None) -> BudgetStatus:
    """The tenant's budget status; QuotaExceeded when this month's budget is used up."""
    status = budget_status(store, tenant_id, now)
    if status.exhausted:
        raise QuotaExceeded(
            f"tenant {tenant_id!r} has used its budget for {status.month}: {status.describe()}",
            hint="raise it with `soma billing budget set`, or wait for next month",
        )
    return status


def warn_if_crossed(
    store: Store, tenant_id: str, project_id: str, now: datetime | None = None
) -> bool:
    """Write the month's ``budget_warning`` event (once) when usage crossed the warning
    fraction; True if this call wrote it."""
    status = budget_status(store, tenant_id, now)
    budget = status.budget
    if budget is None or status.used_fraction < budget.warn_fraction:
        return False
    marker = f"budget-warning:{tenant_id}:{status.month}"
    if store.recall_result(marker, tenant_id=tenant_id) is not None:
        return False
    store.remember_result(marker, "budget_warning", project_id, {}, tenant_id=tenant_id)
    store.add_event(
        project_id,
        "budget_warning",
        f"{status.used_fraction:.0%} of the {status.month} budget used: {status.describe()}",
        data={
            "month": status.month,
            "used_fraction": round(status.used_fraction, 4),
            "tokens": status.usage.tokens,
            "cost_micros": status.usage.cost_micros,
        },
        tenant_id=tenant_id,
    )
    return True
