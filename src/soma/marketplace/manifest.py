"""What a package says about itself, and what the registry says about a published package.

These models are the marketplace's contract: the archive format, the registry's store and HTTP
API, the installer and the search index all speak them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from soma.specs.models import Name, SemVer

PackageKind = Literal["capsule", "persona"]
DependencyKind = Literal["capsule", "persona", "tool"]
MANIFEST_FILE = "soma-package.json"
"""The manifest's name inside an archive; every other member lives under ``files/``."""
SIGNED_PREFIX = b"soma-package-v1\n"
"""Domain separation: a signature is over this prefix plus the archive's sha256 hex digest, so
a publisher key can never be tricked into signing something that verifies as a package."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dependency(_Strict):
    """Another package (or a tool that must exist where the package is installed)."""

    kind: DependencyKind
    name: str = Field(min_length=1, max_length=128)
    range: str = Field(default="*", description="Semver range, e.g. ^1.2 or >=1.0,<2.0.")


class Manifest(_Strict):
    """The package's own description, stored in the archive as ``soma-package.json``.

    ``files`` maps each file's path (relative, POSIX, under ``files/`` in the archive) to the
    sha256 of its bytes, so a file changed inside an otherwise valid archive is caught too.
    """

    format: Literal[1] = 1
    name: Name
    version: SemVer
    kind: PackageKind
    publisher: Name
    description: str = Field(min_length=1, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=32)
    license: str | None = None
    dependencies: list[Dependency] = Field(default_factory=list)
    files: dict[str, str] = Field(min_length=1)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Signature(_Strict):
    """An ed25519 signature by a publisher over ``SIGNED_PREFIX + digest``.

    ``key_id`` is the first 16 hex characters of the sha256 of the raw 32-byte public key, so a
    publisher can rotate keys and verifiers know which one to check against.
    """

    publisher: Name
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    algorithm: Literal["ed25519"] = "ed25519"
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the archive")
    value: str = Field(min_length=1, description="base64 of the 64-byte signature")


class PublishedVersion(BaseModel):
    """A version as the registry serves it."""

    manifest: Manifest
    digest: str
    signature: Signature
    size: int
    yanked: bool = False
    yank_reason: str | None = None
    downloads: int = 0
    published_at: datetime


class PackageSummary(BaseModel):
    """One package in search results and listings: its latest non-yanked version."""

    name: str
    kind: PackageKind
    publisher: str
    latest: str
    description: str
    tags: list[str]
    downloads: int = 0
    rating: float | None = None
    ratings: int = 0
    score: float | None = Field(default=None, description="Search relevance, when searched.")
