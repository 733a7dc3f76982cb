"""The capsule and persona library, read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from soma.gateway.auth import require, services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["library"])

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require(Permission.LIBRARY_READ))]


@router.get("/capsules", summary="Capsules (latest version of each)")
async def list_capsules(who: Reader, svc: Svc) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in svc.library_for(who.tenant_id).capsules()]


@router.get("/capsules/{ref}", summary="One capsule: name or name@version")
async def get_capsule(ref: str, who: Reader, svc: Svc) -> dict[str, Any]:
    return svc.library_for(who.tenant_id).capsule(ref).model_dump(mode="json")


@router.get("/personas", summary="Personas (latest version of each)")
async def list_personas(who: Reader, svc: Svc) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in svc.library_for(who.tenant_id).personas()]


@router.get("/personas/{ref}", summary="One persona: name or name@version")
async def get_persona(ref: str, who: Reader, svc: Svc) -> dict[str, Any]:
    return svc.library_for(who.tenant_id).persona(ref).model_dump(mode="json")
