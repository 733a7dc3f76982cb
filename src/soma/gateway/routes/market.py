"""The marketplace registry over HTTP: search, versions, downloads, publishing, yanks, ratings
and publisher keys.

The catalogue is shared by every tenant by design, so reads are not scoped by tenant; what a
tenant owns here is its publisher names, and every write checks that ownership in the registry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from soma.gateway.auth import require
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.marketplace.archive import archive_digest
from soma.marketplace.manifest import PackageKind, PackageSummary, PublishedVersion, Signature
from soma.marketplace.registry import Registry

router = APIRouter(prefix="/api/v1/market", tags=["marketplace"])

Reader = Annotated[Principal, Depends(require(Permission.LIBRARY_READ))]
Publisher = Annotated[Principal, Depends(require(Permission.MARKET_PUBLISH))]


def registry_for(request: Request) -> Registry:
    """The app's registry, created on first use so that building an app stays cheap (its
    search index is built on the first search)."""
    state = request.app.state
    registry: Registry | None = getattr(state, "soma_market_registry", None)
    if registry is None:
        registry = Registry(state.services.store)
        state.soma_market_registry = registry
    return registry


Reg = Annotated[Registry, Depends(registry_for)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishIn(_Body):
    archive: str = Field(description="The package archive (.soma), base64-encoded.")
    signature: Signature

    @field_validator("archive")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("archive must be base64 (the .soma bytes, encoded)") from None
        return value

    def archive_bytes(self) -> bytes:
        return base64.b64decode(self.archive, validate=True)


class YankIn(_Body):
    reason: str = Field(min_length=1, max_length=1000, description="Why, shown to installers.")


class RatingIn(_Body):
    stars: int = Field(ge=1, le=5)


class RatingOut(BaseModel):
    name: str
    stars: int = Field(description="The caller's rating.")
    rating: float | None = Field(description="The package's mean rating.")
    ratings: int


class PublisherKeyIn(_Body):
    public_key: str = Field(
        min_length=1, max_length=200, description="ed25519:<base64 of the 32-byte key>"
    )


class PublisherKeyOut(BaseModel):
    publisher: str
    key_id: str
    public_key: str


@router.get("/packages", summary="Search packages; without a query, the most downloaded")
async def search_packages(
    who: Reader,
    registry: Reg,
    q: Annotated[str, Query(max_length=200, description="Words to search for.")] = "",
    kind: PackageKind | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[PackageSummary]:
    return await asyncio.to_thread(registry.search, q, kind, limit)


@router.get("/packages/{name}", summary="Every version of a package, yanked ones included")
async def list_versions(name: str, who: Reader, registry: Reg) -> list[PublishedVersion]:
    return await asyncio.to_thread(registry.versions, name)


@router.get("/packages/{name}/{version}", summary="One version of a package")
async def get_version(name: str, version: str, who: Reader, registry: Reg) -> PublishedVersion:
    return await asyncio.to_thread(registry.version, name, version)


@router.get(
    "/packages/{name}/{version}/archive",
    summary="Download a version's archive (counted); X-Soma-Digest is its sha256",
    response_class=Response,
    responses={
        200: {
            "description": "The archive (a .soma gzip'd tar).",
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {"X-Soma-Digest": {"schema": {"type": "string"}}},
        }
    },
)
async def download_archive(name: str, version: str, who: Reader, registry: Reg) -> Response:
    data = await asyncio.to_thread(registry.archive, name, version)
    return Response(
        data,
        media_type="application/gzip",
        headers={
            "X-Soma-Digest": archive_digest(data),
            "Content-Disposition": f'attachment; filename="{name}-{version}.soma"',
        },
    )


@router.post("/packages", status_code=201, summary="Publish a signed package version")
async def publish_package(body: PublishIn, who: Publisher, registry: Reg) -> PublishedVersion:
    publish = functools.partial(
        registry.publish,
        body.archive_bytes(),
        body.signature,
        tenant_id=who.tenant_id,
        user_id=who.user_id,
    )
    return await asyncio.to_thread(publish)


@router.post(
    "/packages/{name}/{version}/yank",
    summary="Yank a version: kept for existing installs, never picked for new ones",
)
async def yank_version(
    name: str, version: str, body: YankIn, who: Publisher, registry: Reg
) -> PublishedVersion:
    return await asyncio.to_thread(registry.yank, who.tenant_id, name, version, body.reason)


@router.post("/packages/{name}/rating", summary="Rate a package 1 to 5 stars (once per user)")
async def rate_package(name: str, body: RatingIn, who: Publisher, registry: Reg) -> RatingOut:
    summary = await asyncio.to_thread(registry.rate, who.tenant_id, who.user_id, name, body.stars)
    return RatingOut(
        name=name,
        stars=body.stars,
        rating=summary.rating if summary else None,
        ratings=summary.ratings if summary else 0,
    )


@router.get("/publishers/{publisher}/keys", summary="A publisher's registered public keys")
async def publisher_keys(publisher: str, who: Reader, registry: Reg) -> list[str]:
    return await asyncio.to_thread(registry.publisher_keys, publisher)


@router.post(
    "/publishers/{publisher}/keys",
    status_code=201,
    summary="Register a publisher key; the first key claims the publisher name for the tenant",
)
async def register_publisher_key(
    publisher: str, body: PublisherKeyIn, who: Publisher, registry: Reg
) -> PublisherKeyOut:
    record = await asyncio.to_thread(
        registry.register_key, who.tenant_id, publisher, body.public_key
    )
    return PublisherKeyOut(
        publisher=record.publisher, key_id=record.key_id, public_key=record.public_key
    )
