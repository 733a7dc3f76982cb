"""The tenant's audit log and usage."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from soma.gateway.auth import require, services
from soma.gateway.schemas import (
    MAX_ID,
    AuditOut,
    AuditVerifyOut,
    ProjectUsage,
    UsageOut,
    UsageShareOut,
)
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.specs.models import Effect

router = APIRouter(prefix="/api/v1", tags=["governance"])

Svc = Annotated[Services, Depends(services)]
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
UsageReader = Annotated[Principal, Depends(require(Permission.USAGE_READ))]


@router.get("/audit", summary="Policy decisions, oldest first, paged by id")
async def list_audit(
    who: Auditor,
    svc: Svc,
    project: Annotated[str | None, Query(max_length=128)] = None,
    node: Annotated[
        str | None, Query(max_length=128, description="One run of the project.")
    ] = None,
    effect: Effect | None = None,
    tool: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditOut]:
    records = await asyncio.to_thread(
        functools.partial(
            svc.store.list_audit,
            project,
            who.tenant_id,
            limit,
            after,
            node_id=node,
            effect=effect,
            tool=tool,
        )
    )
    return [AuditOut.model_validate(r.model_dump()) for r in records]


@router.get("/audit/verify", summary="Re-check the tenant's audit hash chain")
async def verify_audit(who: Auditor, svc: Svc) -> AuditVerifyOut:
    result = await asyncio.to_thread(svc.store.verify_audit, who.tenant_id)
    return AuditVerifyOut.model_validate(result.model_dump())


@router.get("/usage", summary="Model tokens used by the tenant's projects")
async def usage(
    who: UsageReader, svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> UsageOut:
    projects = await asyncio.to_thread(svc.store.list_projects, who.tenant_id, limit)
    per_project = [
        ProjectUsage(
            project_id=p.id, input_tokens=p.usage_input_tokens, output_tokens=p.usage_output_tokens
        )
        for p in projects
    ]
    totals = await asyncio.to_thread(svc.store.usage_totals, who.tenant_id)
    by_persona = await asyncio.to_thread(svc.store.usage_by_persona, who.tenant_id)
    by_model = await asyncio.to_thread(svc.store.usage_by_model, who.tenant_id)
    return UsageOut(
        tenant_id=who.tenant_id,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        projects=per_project,
        by_persona=[UsageShareOut.model_validate(s._asdict()) for s in by_persona],
        by_model=[UsageShareOut.model_validate(s._asdict()) for s in by_model],
    )
