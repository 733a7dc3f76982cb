"""The caller, their API keys and (for admins) the tenant's users."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from soma.errors import Forbidden
from soma.gateway.auth import authenticate, require, services
from soma.gateway.schemas import KeyCreate, KeyCreated, KeyOut, MeOut, UserCreate, UserOut
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.store import ApiKeyRecord, UserRecord

router = APIRouter(prefix="/api/v1", tags=["identity"])

Svc = Annotated[Services, Depends(services)]
Anyone = Annotated[Principal, Depends(authenticate)]
KeyOwner = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]

DAY_S = 86_400


@router.get("/me", summary="Who the credential belongs to and what it may do")
async def me(who: Anyone) -> MeOut:
    return MeOut(
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        role=who.role,
        permissions=sorted(who.permissions),
        key_id=who.key_id,
    )


@router.get("/keys", summary="API keys: the caller's own, or every key of the tenant for admins")
async def list_keys(who: KeyOwner, svc: Svc) -> list[KeyOut]:
    user = None if who.can(Permission.USERS_MANAGE) else who.user_id
    keys = await asyncio.to_thread(svc.identity.list_keys, who.tenant_id, user)
    return [_key(k) for k in keys]


@router.post("/keys", status_code=201, summary="Create an API key for the caller (shown once)")
async def create_key(body: KeyCreate, who: KeyOwner, svc: Svc) -> KeyCreated:
    record, secret = await asyncio.to_thread(
        lambda: svc.identity.create_key(
            who.tenant_id,
            who.user_id,
            body.name,
            scopes=body.scopes,
            expires_in_s=body.expires_in_days * DAY_S if body.expires_in_days else None,
            actor=_actor(who),
        )
    )
    return KeyCreated(**_key(record).model_dump(), key=secret)


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_key(key_id: str, who: KeyOwner, svc: Svc) -> Response:
    keys = await asyncio.to_thread(svc.identity.list_keys, who.tenant_id, None)
    key = next((k for k in keys if k.id == key_id), None)
    if key is not None and key.user_id != who.user_id and not who.can(Permission.USERS_MANAGE):
        raise Forbidden("only a tenant admin may revoke another user's key")
    await asyncio.to_thread(
        functools.partial(svc.identity.revoke_key, who.tenant_id, key_id, actor=_actor(who))
    )
    return Response(status_code=204)


@router.get("/users", summary="The tenant's users")
async def list_users(who: Admin, svc: Svc) -> list[UserOut]:
    users = await asyncio.to_thread(svc.store.list_users, who.tenant_id)
    return [_user(u) for u in users]


@router.post("/users", status_code=201, summary="Add a user to the tenant")
async def create_user(body: UserCreate, who: Admin, svc: Svc) -> UserOut:
    user = await asyncio.to_thread(
        functools.partial(
            svc.identity.create_user,
            who.tenant_id,
            body.email,
            body.role,
            body.name,
            actor=_actor(who),
        )
    )
    return _user(user)


def _actor(who: Principal) -> str:
    via = f" via key {who.key_id}" if who.key_id else ""
    return f"user:{who.user_id}{via}"


def _key(key: ApiKeyRecord) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        user_id=key.user_id,
        scopes=None if key.scopes is None else [Permission(s) for s in key.scopes],
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def _user(user: UserRecord) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        created_at=user.created_at,
        disabled=user.disabled,
    )
