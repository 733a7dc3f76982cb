"""Usage events and tenant budgets in the store.

A usage event is written under the activity's idempotency key with insert-or-ignore, so however
often an activity is retried or replayed (a worker killed mid-call, a Temporal retry), its usage
is recorded exactly once; the first write wins.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from soma.store.tables import Node, Project, TenantBudget, UsageEvent, utcnow

UsageKind = Literal["model", "tool", "storage"]


class UsageEventRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    tenant_id: str
    key: str
    project_id: str | None
    node_id: str | None
    kind: str
    model: str | None
    tool: str | None
    input_tokens: int
    output_tokens: int
    quantity: float
    cost_micros: int
    created_at: datetime


class BudgetRecord(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    tenant_id: str
    monthly_tokens: int | None
    monthly_cost_micros: int | None
    warn_fraction: float
    updated_at: datetime


class PeriodUsage(BaseModel):
    """A tenant's usage over a period: what budgets are checked against."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RunFact(BaseModel):
    """One finished-or-not run (plan node) with what analytics group and sum by."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    node_id: str
    capsule: str | None
    persona: str | None
    model: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    tokens: int
    cost_micros: int


class MeteringMixin:
    """The metering methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def record_usage(
        self,
        tenant_id: str,
        key: str,
        kind: UsageKind,
        *,
        project_id: str | None = None,
        node_id: str | None = None,
        model: str | None = None,
        tool: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        quantity: float = 0.0,
        cost_micros: int = 0,
        at: datetime | None = None,
    ) -> bool:
        """Record one usage event under ``key``; False when the key was already recorded."""
        values = {
            "tenant_id": tenant_id,
            "key": key,
            "kind": kind,
            "project_id": project_id,
            "node_id": node_id,
            "model": model,
            "tool": tool,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "quantity": quantity,
            "cost_micros": cost_micros,
            "created_at": at or utcnow(),
        }
        with self._write() as session:
            name = session.get_bind().dialect.name
            if name not in ("postgresql", "sqlite"):  # pragma: no cover - other backends
                taken = session.scalar(
                    select(UsageEvent.id).where(
                        UsageEvent.tenant_id == tenant_id, UsageEvent.key == key
                    )
                )
                if taken is not None:
                    return False
                session.execute(insert(UsageEvent).values(values))
                return True
            dialect_insert = pg_insert if name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(UsageEvent)
                .values(values)
                .on_conflict_do_nothing()
                .returning(UsageEvent.id)
            )
            # RETURNING, not rowcount: psycopg reports -1 for a row skipped by ON CONFLICT.
            return session.execute(statement).scalar_one_or_none() is not None

    def usage_events(
        self,
        tenant_id: str,
        start: datetime,
        end: datetime,
        *,
        project_id: str | None = None,
    ) -> list[UsageEventRecord]:
        """The tenant's usage events in ``[start, end)``, oldest first."""
        query = select(UsageEvent).where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.created_at >= start,
            UsageEvent.created_at < end,
        )
        if project_id is not None:
            query = query.where(UsageEvent.project_id == project_id)
        with self._read() as session:
            rows = session.scalars(query.order_by(UsageEvent.id))
            return [UsageEventRecord.model_validate(r) for r in rows]

    def period_usage(self, tenant_id: str, start: datetime, end: datetime) -> PeriodUsage:
        """Tokens and cost of the tenant's usage in ``[start, end)``, in one query."""
        query = select(
            func.coalesce(func.sum(UsageEvent.input_tokens), 0),
            func.coalesce(func.sum(UsageEvent.output_tokens), 0),
            func.coalesce(func.sum(UsageEvent.cost_micros), 0),
        ).where(
            UsageEvent.tenant_id == tenant_id,
            UsageEvent.created_at >= start,
            UsageEvent.created_at < end,
        )
        with self._read() as session:
            tokens_in, tokens_out, cost = session.execute(query).one()
        return PeriodUsage(
            input_tokens=int(tokens_in), output_tokens=int(tokens_out), cost_micros=int(cost)
        )

    def run_facts(self, tenant_id: str, since: datetime) -> list[RunFact]:
        """The tenant's runs created since ``since``, with each run's metered cost."""
        runs = (
            select(
                Node.project_id,
                Node.node_id,
                Node.capsule,
                Node.persona,
                Project.model,
                Node.status,
                Node.started_at,
                Node.finished_at,
                Node.created_at,
                Node.input_tokens + Node.output_tokens,
            )
            .join(Project, Project.id == Node.project_id)
            .where(Node.tenant_id == tenant_id, Node.created_at >= since)
        )
        costs = (
            select(UsageEvent.project_id, UsageEvent.node_id, func.sum(UsageEvent.cost_micros))
            .where(UsageEvent.tenant_id == tenant_id, UsageEvent.created_at >= since)
            .group_by(UsageEvent.project_id, UsageEvent.node_id)
        )
        with self._read() as session:
            cost = {(p, n): int(c or 0) for p, n, c in session.execute(costs)}
            return [
                RunFact(
                    project_id=row[0],
                    node_id=row[1],
                    capsule=row[2],
                    persona=row[3],
                    model=row[4],
                    status=row[5],
                    started_at=row[6],
                    finished_at=row[7],
                    created_at=row[8],
                    tokens=int(row[9] or 0),
                    cost_micros=cost.get((row[0], row[1]), 0),
                )
                for row in session.execute(runs)
            ]

    def get_budget(self, tenant_id: str) -> BudgetRecord | None:
        with self._read() as session:
            found = session.get(TenantBudget, tenant_id)
            return BudgetRecord.model_validate(found) if found is not None else None

    def set_budget(
        self,
        tenant_id: str,
        *,
        monthly_tokens: int | None,
        monthly_cost_micros: int | None,
        warn_fraction: float = 0.8,
    ) -> BudgetRecord:
        """Create or replace the tenant's monthly limits (None: unlimited)."""
        with self._write() as session:
            row = session.get(TenantBudget, tenant_id)
            if row is None:
                row = TenantBudget(tenant_id=tenant_id)
                session.add(row)
            row.monthly_tokens = monthly_tokens
            row.monthly_cost_micros = monthly_cost_micros
            row.warn_fraction = warn_fraction
            row.updated_at = utcnow()
            session.flush()
            return BudgetRecord.model_validate(row)
