"""The marketplace: browse and search, a package's page (description, versions, dependencies,
evals, publisher, signature and trust), and install into the tenant's library."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from soma.console.access import page
from soma.console.templating import render
from soma.errors import SomaError
from soma.gateway.auth import services
from soma.gateway.routes.market import registry_for
from soma.gateway.routes.market_installs import installer_for
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.marketplace.archive import spec_file, unpack
from soma.marketplace.manifest import PackageKind, PublishedVersion
from soma.marketplace.registry import LocalSource, Registry
from soma.specs.loader import parse_spec
from soma.specs.models import Capsule, Persona

router = APIRouter()

Svc = Annotated[Services, Depends(services)]
Reg = Annotated[Registry, Depends(registry_for)]
Reader = Annotated[Principal, Depends(page(Permission.LIBRARY_READ))]
Installer = Annotated[Principal, Depends(page(Permission.MARKET_INSTALL))]


@router.get("/market", response_class=HTMLResponse)
async def browse(
    request: Request,
    who: Reader,
    registry: Reg,
    svc: Svc,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: PackageKind | None = None,
) -> HTMLResponse:
    found = await asyncio.to_thread(registry.search, q, kind, 50)
    installed = await asyncio.to_thread(installer_for(svc, who).installed)
    return render(
        request,
        "market.html",
        who,
        title="Marketplace",
        q=q,
        kind=kind,
        packages=found,
        installed={p.name: p.version for p in installed},
    )


@router.get("/market/{name}", response_class=HTMLResponse)
async def package(
    request: Request, name: str, who: Reader, registry: Reg, svc: Svc
) -> HTMLResponse:
    versions = await asyncio.to_thread(registry.versions, name)
    latest = next((v for v in reversed(versions) if not v.yanked), versions[-1])
    spec = await asyncio.to_thread(_spec_of, svc, latest)
    trusted = {
        v.manifest.version: await asyncio.to_thread(
            svc.store.trusted_key, who.tenant_id, v.signature.publisher, v.signature.key_id
        )
        is not None
        for v in versions
    }
    installed = await asyncio.to_thread(installer_for(svc, who).installed)
    summary = next(iter(await asyncio.to_thread(svc.store.package_summaries, [name])), None)
    return render(
        request,
        "package.html",
        who,
        title=name,
        name=name,
        latest=latest,
        versions=list(reversed(versions)),
        summary=summary,
        spec=spec,
        trusted=trusted,
        installed=next((p for p in installed if p.name == name), None),
        can_install=who.can(Permission.MARKET_INSTALL),
    )


@router.post("/market/{name}/install")
async def install(
    name: str,
    who: Installer,
    svc: Svc,
    range: Annotated[str, Form(min_length=1, max_length=100)] = "*",
) -> RedirectResponse:
    done = await installer_for(svc, who).install(LocalSource(svc.store), name, range.strip())
    version = next((p.version for p in done if p.name == name), "")
    # Nothing installed: the version is built in, or already installed (say so, not "done").
    return RedirectResponse(f"/market/{name}?installed={quote(version)}", status_code=303)


def _spec_of(svc: Services, version: PublishedVersion) -> dict[str, Any]:
    """What the package page shows of the spec inside the archive: a capsule's persona, tools
    and evals, or a persona's role and model. Reading it is not counted as a download."""
    manifest = version.manifest
    try:
        data = svc.store.package_archive(manifest.name, manifest.version, count=False)
        unpacked = unpack(data)
        path = spec_file(unpacked)
        spec = parse_spec(unpacked.files[path].decode("utf-8-sig"), manifest.kind, path)
    except SomaError as exc:
        return {"error": str(exc)}
    if isinstance(spec, Capsule):
        return {
            "persona": spec.persona,
            "tools": [t.name for t in spec.tools],
            "evals": [
                {"name": e.name, "checks": [c.model_dump(exclude_none=True) for c in e.checks]}
                for e in spec.evals
            ],
            "review": spec.review,
        }
    if isinstance(spec, Persona):
        return {"role": spec.role, "goal": spec.goal, "skills": spec.skills, "tools": spec.tools}
    return {}
