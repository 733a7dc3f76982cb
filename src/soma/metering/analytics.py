"""Analytics: success rate, cost and duration per capsule, persona or model, over time.

Computed from the tenant's runs (plan nodes) and their metered cost; a run counts as a success
when it succeeded, as a failure when it failed, and is left out of the rate while unfinished.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from soma.metering.prices import usd
from soma.store import Store
from soma.store.metering import RunFact

GroupBy = Literal["capsule", "persona", "model"]
Bucket = Literal["day", "total"]


class AnalyticsRow(BaseModel):
    name: str = Field(description="The capsule, persona or model ('(none)' where unknown).")
    period: str = Field(description="YYYY-MM-DD for daily rows, 'total' otherwise.")
    runs: int
    succeeded: int
    failed: int
    success_rate: float | None = Field(description="succeeded / finished; null if none finished.")
    avg_duration_s: float | None
    tokens: int
    cost_micros: int
    cost_usd: str


def analytics(
    store: Store, tenant_id: str, *, by: GroupBy, since: datetime, bucket: Bucket = "total"
) -> list[AnalyticsRow]:
    groups: dict[tuple[str, str], list[RunFact]] = defaultdict(list)
    for fact in store.run_facts(tenant_id, since):
        name = _name(fact, by)
        period = fact.created_at.strftime("%Y-%m-%d") if bucket == "day" else "total"
        groups[(name, period)].append(fact)
    rows = [_row(name, period, facts) for (name, period), facts in groups.items()]
    return sorted(rows, key=lambda r: (r.period, -r.runs, r.name))


def _name(fact: RunFact, by: GroupBy) -> str:
    value = {"capsule": fact.capsule, "persona": fact.persona, "model": fact.model}[by]
    if by == "capsule" and value:
        value = value.split("@")[0]
    return value or "(none)"


def _row(name: str, period: str, facts: list[RunFact]) -> AnalyticsRow:
    succeeded = sum(f.status == "succeeded" for f in facts)
    failed = sum(f.status == "failed" for f in facts)
    finished = succeeded + failed
    durations = [
        (f.finished_at - f.started_at).total_seconds()
        for f in facts
        if f.started_at is not None and f.finished_at is not None
    ]
    cost = sum(f.cost_micros for f in facts)
    return AnalyticsRow(
        name=name,
        period=period,
        runs=len(facts),
        succeeded=succeeded,
        failed=failed,
        success_rate=round(succeeded / finished, 4) if finished else None,
        avg_duration_s=round(sum(durations) / len(durations), 3) if durations else None,
        tokens=sum(f.tokens for f in facts),
        cost_micros=cost,
        cost_usd=usd(cost),
    )
