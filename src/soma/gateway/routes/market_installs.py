"""A tenant's installed packages and trusted publisher keys, over HTTP.

Unlike the registry's catalogue, these are the caller's tenant's own: installs land in its
library and are verified against the keys it trusts. An install from another Soma instance
(``registry``) is fetched by this gateway, so federation needs no client-side tooling.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from soma.gateway.auth import require, services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.marketplace.installer import Installer, StoreTrust
from soma.marketplace.registry import LocalSource
from soma.marketplace.sources import HttpSource
from soma.store import InstalledPackage, TrustedKeyRecord

router = APIRouter(prefix="/api/v1/market", tags=["marketplace"])

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require(Permission.LIBRARY_READ))]
Manager = Annotated[Principal, Depends(require(Permission.MARKET_INSTALL))]
# Trusting a key decides what every future install of the tenant accepts: admins only.
TrustAdmin = Annotated[Principal, Depends(require(Permission.MARKET_TRUST))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstallIn(_Body):
    name: str = Field(min_length=1, max_length=64, description="The package to install.")
    range: str = Field(
        default="*",
        min_length=1,
        max_length=100,
        description="Semver range, e.g. ^1.2; an exact pin (=1.2.3) may pick a yanked version.",
    )
    registry: str | None = Field(
        default=None,
        max_length=2000,
        description="Another Soma gateway's base URL to install from; null: this instance.",
    )
    token: str | None = Field(
        default=None,
        max_length=500,
        description="API key for `registry`; sent only to it, never stored.",
    )


class TrustIn(_Body):
    publisher: str = Field(min_length=1, max_length=64)
    public_key: str = Field(
        min_length=1, max_length=200, description="ed25519:<base64 of the 32-byte key>"
    )


def installer_for(svc: Services, who: Principal) -> Installer:
    via = f" via key {who.key_id}" if who.key_id else ""
    return Installer(
        svc.store,
        svc.settings,
        who.tenant_id,
        StoreTrust(svc.store, who.tenant_id),
        actor=f"user:{who.user_id}{via}",
    )


@router.get("/installed", summary="Packages installed in the caller's tenant")
async def list_installed(who: Reader, svc: Svc) -> list[InstalledPackage]:
    return await asyncio.to_thread(installer_for(svc, who).installed)


@router.post(
    "/installed",
    status_code=201,
    summary="Install a package and its dependencies, verified against the tenant's trusted keys",
)
async def install_package(body: InstallIn, who: Manager, svc: Svc) -> list[InstalledPackage]:
    installer = installer_for(svc, who)
    if body.registry is None:
        return await installer.install(LocalSource(svc.store), body.name, body.range)
    async with HttpSource(body.registry, body.token) as source:
        return await installer.install(source, body.name, body.range)


@router.delete(
    "/installed/{name}",
    status_code=204,
    response_class=Response,
    summary="Uninstall a package (refused while another installed package depends on it)",
)
async def uninstall_package(name: str, who: Manager, svc: Svc) -> Response:
    await asyncio.to_thread(installer_for(svc, who).uninstall, name)
    return Response(status_code=204)


@router.get("/trust", summary="Publisher keys the caller's tenant trusts for installs")
async def list_trusted(who: Reader, svc: Svc) -> list[TrustedKeyRecord]:
    return await asyncio.to_thread(installer_for(svc, who).trusted)


@router.post("/trust", status_code=201, summary="Trust a publisher key for the tenant's installs")
async def trust_key(body: TrustIn, who: TrustAdmin, svc: Svc) -> TrustedKeyRecord:
    return await asyncio.to_thread(installer_for(svc, who).trust, body.publisher, body.public_key)
