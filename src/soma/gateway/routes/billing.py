"""Metering over HTTP: the tenant's monthly invoice, its budget, and run analytics."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from soma.gateway.auth import require, services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.metering.analytics import AnalyticsRow, Bucket, GroupBy, analytics
from soma.metering.budgets import budget_status
from soma.metering.invoice import Invoice, build_invoice
from soma.metering.periods import MONTH_PATTERN, month_of
from soma.metering.prices import MICROS_PER_USD, load_prices, usd
from soma.store.tables import utcnow

router = APIRouter(prefix="/api/v1", tags=["billing"])

Svc = Annotated[Services, Depends(services)]
UsageReader = Annotated[Principal, Depends(require(Permission.USAGE_READ))]
BillingAdmin = Annotated[Principal, Depends(require(Permission.BILLING_MANAGE))]
Month = Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM")]


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_tokens: int | None = Field(default=None, ge=0, le=10**15, description="null: unlimited")
    monthly_usd: float | None = Field(default=None, ge=0, le=1e9, description="null: unlimited")
    warn_fraction: float = Field(default=0.8, gt=0, le=1)


class BudgetOut(BaseModel):
    tenant_id: str
    month: str
    monthly_tokens: int | None
    monthly_usd: float | None
    warn_fraction: float
    used_tokens: int
    used_usd: str
    used_fraction: float
    exhausted: bool


@router.get("/billing/invoice", summary="The tenant's invoice for a month (default: this one)")
async def invoice(who: UsageReader, svc: Svc, month: Month = None) -> Invoice:
    prices = load_prices(svc.settings.prices_file)
    chosen = month or month_of(utcnow())
    return await asyncio.to_thread(build_invoice, svc.store, who.tenant_id, chosen, prices)


@router.get("/billing/budget", summary="The tenant's monthly budget and this month's use of it")
async def get_budget(who: UsageReader, svc: Svc) -> BudgetOut:
    return await asyncio.to_thread(_budget_out, svc, who.tenant_id)


@router.put("/billing/budget", summary="Set the tenant's monthly budget (checked before work)")
async def put_budget(body: BudgetIn, who: BillingAdmin, svc: Svc) -> BudgetOut:
    cost = None if body.monthly_usd is None else round(body.monthly_usd * MICROS_PER_USD)
    await asyncio.to_thread(
        functools.partial(
            svc.store.set_budget,
            who.tenant_id,
            monthly_tokens=body.monthly_tokens,
            monthly_cost_micros=cost,
            warn_fraction=body.warn_fraction,
        )
    )
    return await asyncio.to_thread(_budget_out, svc, who.tenant_id)


@router.get("/analytics", summary="Success rate, cost and duration per capsule, persona or model")
async def run_analytics(
    who: UsageReader,
    svc: Svc,
    by: GroupBy = "capsule",
    bucket: Bucket = "total",
    days: Annotated[int, Query(ge=1, le=366, description="How far back.")] = 30,
) -> list[AnalyticsRow]:
    since = utcnow() - timedelta(days=days)
    compute = functools.partial(
        analytics, svc.store, who.tenant_id, by=by, since=since, bucket=bucket
    )
    return await asyncio.to_thread(compute)


def _budget_out(svc: Services, tenant_id: str) -> BudgetOut:
    status = budget_status(svc.store, tenant_id)
    budget = status.budget
    cost = budget.monthly_cost_micros if budget else None
    return BudgetOut(
        tenant_id=tenant_id,
        month=status.month,
        monthly_tokens=budget.monthly_tokens if budget else None,
        monthly_usd=None if cost is None else cost / MICROS_PER_USD,
        warn_fraction=budget.warn_fraction if budget else 0.8,
        used_tokens=status.usage.tokens,
        used_usd=usd(status.usage.cost_micros),
        used_fraction=round(status.used_fraction, 4),
        exhausted=status.exhausted,
    )
