"""The caller's tenant's secrets (adapter credentials): set, list names, delete.

No route returns a value: secrets are write-only over the API, so a stolen admin key can
replace or remove credentials (audited) but never read them back.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from soma.gateway.auth import require, services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.secrets import Vault
from soma.store import SecretInfo

router = APIRouter(prefix="/api/v1", tags=["secrets"])

Svc = Annotated[Services, Depends(services)]
Manager = Annotated[Principal, Depends(require(Permission.SECRETS_MANAGE))]


class SecretSet(BaseModel):
    """The new value; its limits are checked by the vault, whose errors never echo it."""

    model_config = ConfigDict(extra="forbid")

    value: str


@router.get("/secrets", summary="The tenant's secrets: names and dates, never values")
async def list_secrets(who: Manager, svc: Svc) -> list[SecretInfo]:
    return await asyncio.to_thread(_vault(svc).names, who.tenant_id)


@router.put("/secrets/{name}", status_code=204, summary="Create or replace a secret")
async def set_secret(name: str, body: SecretSet, who: Manager, svc: Svc) -> Response:
    await asyncio.to_thread(
        functools.partial(_vault(svc).set, who.tenant_id, name, body.value, actor=_actor(who))
    )
    return Response(status_code=204)


@router.delete("/secrets/{name}", status_code=204, summary="Delete a secret")
async def delete_secret(name: str, who: Manager, svc: Svc) -> Response:
    await asyncio.to_thread(
        functools.partial(_vault(svc).delete, who.tenant_id, name, actor=_actor(who))
    )
    return Response(status_code=204)


def _vault(svc: Services) -> Vault:
    return Vault(svc.store, svc.secret_key)


def _actor(who: Principal) -> str:
    via = f" via key {who.key_id}" if who.key_id else ""
    return f"user:{who.user_id}{via}"
