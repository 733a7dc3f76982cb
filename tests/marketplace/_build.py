"""Builds real, signed packages for install tests: spec files on disk, packed and signed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from soma.marketplace.archive import archive_digest, pack
from soma.marketplace.manifest import PublishedVersion, Signature
from soma.marketplace.signing import PublisherKey, sign


def capsule_dir(
    root: Path,
    name: str,
    version: str = "1.0.0",
    *,
    persona: str = "developer",
    tools: tuple[str, ...] = ("fs.read",),
    depends: dict[str, str] | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """A capsule source directory; ``depends`` maps other capsules to ranges (package.yaml)."""
    directory = root / f"{name}-{version}"
    directory.mkdir(parents=True)
    spec = {
        "kind": "capsule",
        "name": name,
        "version": version,
        "description": f"The {name} capsule, for tests.",
        "persona": persona,
        "tools": list(tools),
        "instructions": "Do the {{ goal }} thing.",
        "inputs": {"type": "object", "properties": {"goal": {"type": "string"}}},
    }
    (directory / "capsule.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if depends:
        deps = [{"kind": "capsule", "name": n, "range": r} for n, r in depends.items()]
        (directory / "package.yaml").write_text(yaml.safe_dump({"dependencies": deps}))
    for relative, text in (extra_files or {}).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def persona_file(root: Path, name: str, version: str = "1.0.0") -> Path:
    directory = root / f"{name}-{version}"
    directory.mkdir(parents=True)
    path = directory / f"{name}.yaml"
    spec = {
        "kind": "persona",
        "name": name,
        "version": version,
        "role": "tester",
        "goal": "Check what others built.",
        "tools": ["fs.read", "fs.write"],
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def signed(source: Path, key: PublisherKey) -> tuple[bytes, Signature]:
    _, data = pack(source, publisher=key.publisher)
    return data, sign(data, key)


def published(data: bytes, signature: Signature) -> PublishedVersion:
    """What a registry would list for the archive."""
    from soma.marketplace.archive import read_manifest

    return PublishedVersion(
        manifest=read_manifest(data),
        digest=archive_digest(data),
        signature=signature,
        size=len(data),
        published_at=datetime.now(UTC),
    )


class ArchiveSource:
    """A registry in memory holding real archives; tests may swap an archive's bytes."""

    url = "memory://registry"

    def __init__(self) -> None:
        self.listed: dict[str, dict[str, PublishedVersion]] = {}
        self.archives: dict[tuple[str, str], bytes] = {}
        self.downloads: list[str] = []
        self.keys: dict[str, list[str]] = {}

    def add(self, data: bytes, signature: Signature) -> PublishedVersion:
        version = published(data, signature)
        manifest = version.manifest
        self.listed.setdefault(manifest.name, {})[manifest.version] = version
        self.archives[(manifest.name, manifest.version)] = data
        return version

    async def versions(self, name: str) -> list[PublishedVersion]:
        return list(self.listed.get(name, {}).values())

    async def archive(self, name: str, version: str) -> bytes:
        self.downloads.append(f"{name}@{version}")
        return self.archives[(name, version)]

    async def publisher_keys(self, publisher: str) -> list[str]:
        return self.keys.get(publisher, [])
