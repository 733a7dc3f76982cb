"""Audit and usage: the tenant's policy decisions with filters and the chain's verification,
and token usage per project, persona and model, drawn as bar charts."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from soma.console.access import page
from soma.console.templating import render
from soma.gateway.auth import services
from soma.gateway.schemas import MAX_ID
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.metering.analytics import GroupBy, analytics
from soma.metering.budgets import budget_status
from soma.metering.invoice import build_invoice
from soma.metering.periods import month_of
from soma.metering.prices import load_prices
from soma.specs.models import Effect
from soma.store.tables import utcnow

router = APIRouter()

Svc = Annotated[Services, Depends(services)]
Auditor = Annotated[Principal, Depends(page(Permission.AUDIT_READ))]
UsageReader = Annotated[Principal, Depends(page(Permission.USAGE_READ))]
PAGE = 100
EFFECTS = get_args(Effect)


@router.get("/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    who: Auditor,
    svc: Svc,
    project: Annotated[str | None, Query(max_length=128)] = None,
    effect: Annotated[str | None, Query(max_length=32)] = None,
    tool: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> HTMLResponse:
    filters = {"project": project or None, "effect": effect or None, "tool": tool or None}
    records = await asyncio.to_thread(
        svc.store.list_audit,
        filters["project"],
        who.tenant_id,
        PAGE + 1,
        after,
        effect=filters["effect"],
        tool=filters["tool"],
    )
    chain = await asyncio.to_thread(svc.store.verify_audit, who.tenant_id)
    more = len(records) > PAGE
    records = records[:PAGE]
    return render(
        request,
        "audit.html",
        who,
        title="Audit",
        records=records,
        chain=chain,
        filters=filters,
        effects=EFFECTS,
        next_after=records[-1].id if more and records else None,
    )


@router.get("/usage", response_class=HTMLResponse)
async def usage(
    request: Request,
    who: UsageReader,
    svc: Svc,
    by: GroupBy = "capsule",
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> HTMLResponse:
    projects = await asyncio.to_thread(svc.store.list_projects, who.tenant_id, 25)
    totals = await asyncio.to_thread(svc.store.usage_totals, who.tenant_id)
    by_persona = await asyncio.to_thread(svc.store.usage_by_persona, who.tenant_id)
    by_model = await asyncio.to_thread(svc.store.usage_by_model, who.tenant_id)
    charts = [
        _chart(
            "Tokens per project (latest 25)",
            [(p.id, p.goal, p.usage_input_tokens, p.usage_output_tokens) for p in projects],
        ),
        _chart(
            "Tokens per persona",
            [
                (s.name or "(none)", _count(s.runs, "run"), s.input_tokens, s.output_tokens)
                for s in by_persona
            ],
        ),
        _chart(
            "Tokens per model",
            [
                (
                    s.name or "(not recorded)",
                    _count(s.runs, "project"),
                    s.input_tokens,
                    s.output_tokens,
                )
                for s in by_model
            ],
        ),
    ]
    prices = load_prices(svc.settings.prices_file)
    month = month_of(utcnow())
    invoice = await asyncio.to_thread(build_invoice, svc.store, who.tenant_id, month, prices)
    budget = await asyncio.to_thread(budget_status, svc.store, who.tenant_id)
    since = utcnow() - timedelta(days=days)
    rows = await asyncio.to_thread(
        functools.partial(analytics, svc.store, who.tenant_id, by=by, since=since)
    )
    return render(
        request,
        "usage.html",
        who,
        title="Usage",
        totals=totals,
        charts=charts,
        invoice=invoice,
        budget=budget,
        analytics=rows,
        by=by,
        days=days,
    )


def _chart(title: str, rows: list[tuple[str, str, int, int]]) -> dict[str, Any]:
    """A horizontal stacked bar chart's data: bar widths are percentages of the largest total,
    so the template draws it with plain SVG and no script."""
    peak = max((i + o for _, _, i, o in rows), default=0) or 1
    bars = [
        {
            "label": label,
            "note": note,
            "input": i,
            "output": o,
            "input_pct": round(100 * i / peak, 2),
            "output_pct": round(100 * o / peak, 2),
        }
        for label, note, i, o in rows
    ]
    return {"title": title, "bars": bars}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
