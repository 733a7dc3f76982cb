"""The built-in capsules and personas, published to the instance's own registry as publisher
``soma``, so a fresh install has a catalogue to browse and install from.

The packages are signed by an instance key kept at ``$SOMA_HOME/market/keys/soma.key`` (made on
first start). The ``default`` tenant owns the ``soma`` publisher name, and every tenant trusts
its keys, since they vouch for nothing more than the specs that ship with Soma itself.

Publishing is idempotent and safe when several processes start at once: versions already there
are left alone. Because :func:`soma.marketplace.archive.pack` is deterministic, a version that is
there with a *different* content means a built-in spec changed without a version bump, which
would make two instances serve different packages under one version; that is an error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from soma.errors import Conflict, Forbidden, NotFound, SomaError
from soma.marketplace.archive import archive_digest, pack
from soma.marketplace.manifest import Manifest
from soma.marketplace.signing import PublisherKey, sign
from soma.settings import Settings
from soma.specs.library import builtin_dir
from soma.store import DEFAULT_TENANT, Store

PUBLISHER = "soma"
OWNER_TENANT = DEFAULT_TENANT
PUBLISHED_BY = "soma-catalogue"
"""Recorded as the publishing user: no person published these."""

log = logging.getLogger(__name__)


def instance_key_path(settings: Settings) -> Path:
    return settings.home / "market" / "keys" / f"{PUBLISHER}.key"


def publish_builtin_catalogue(
    store: Store, settings: Settings, *, library_dir: Path | None = None
) -> int:
    """Publish every built-in capsule and persona not yet in the registry; returns how many
    versions were published now. ``library_dir`` replaces the built-in library (for tests)."""
    key = _instance_key(instance_key_path(settings))
    store.add_publisher_key(OWNER_TENANT, PUBLISHER, key.key_id, key.public_text)
    root = library_dir or _builtin_root()
    published = 0
    changed: list[str] = []
    for source in _sources(root):
        manifest, data = pack(source, publisher=PUBLISHER)
        try:
            if _publish(store, key, manifest, data):
                published += 1
        except Forbidden as exc:
            # Another publisher took the name first; failing the start would let anyone with
            # publish rights keep the instance down, so the built-in one is just not listed.
            log.warning(
                "built-in %s %s is not in the registry: %s", manifest.kind, manifest.ref, exc
            )
        except Conflict:
            changed.append(manifest.ref)
    for tenant in store.list_tenants():
        trust_catalogue_keys(store, tenant.id)
    if changed:
        raise Conflict(
            "built-in packages differ from the versions already published: " + ", ".join(changed),
            hint="a built-in capsule or persona changed without a version bump; bump its version",
        )
    if published:
        log.info("published %d built-in packages to the registry as '%s'", published, PUBLISHER)
    return published


def trust_catalogue_keys(store: Store, tenant_id: str) -> None:
    """Make the tenant trust every key of publisher ``soma``: call it for new tenants too."""
    for registered in store.publisher_keys(PUBLISHER):
        store.trust_publisher_key(tenant_id, PUBLISHER, registered.key_id, registered.public_key)


def _publish(store: Store, key: PublisherKey, manifest: Manifest, data: bytes) -> bool:
    """Publish one version unless it is there; Conflict if it is there with other content."""
    digest = archive_digest(data)
    try:
        existing = store.get_package_version(manifest.name, manifest.version)
    except NotFound:
        try:
            store.add_package_version(
                manifest,
                digest,
                sign(data, key),
                data,
                tenant_id=OWNER_TENANT,
                user_id=PUBLISHED_BY,
            )
            return True
        except Conflict:  # another process published it a moment ago; compare with theirs
            existing = store.get_package_version(manifest.name, manifest.version)
    # Equal manifests mean equal file contents (each file's sha256 is in it), even if another
    # zlib compressed them to different bytes.
    if existing.digest != digest and existing.manifest != manifest:
        raise Conflict(f"{manifest.ref} is published with other content")
    return False


def _instance_key(path: Path) -> PublisherKey:
    """The instance's signing key, made on first use. Two processes starting at once may both
    generate one; :meth:`PublisherKey.save` never overwrites, so one wins and both load it."""
    if not path.exists():
        with contextlib.suppress(Conflict):
            PublisherKey.generate(PUBLISHER).save(path)
    key = PublisherKey.load(path)
    if key.publisher != PUBLISHER:
        raise SomaError(
            f"{path} is a key of publisher '{key.publisher}', not '{PUBLISHER}'",
            hint="move the file away; a new instance key is made on the next start",
        )
    return key


def _builtin_root() -> Path:
    root = builtin_dir()
    if not isinstance(root, Path):
        raise SomaError(
            "the built-in library is not a directory on disk (Soma is installed as a zip)",
            hint="install Soma as a regular package to publish the built-in catalogue",
        )
    return root


def _sources(root: Path) -> Iterator[Path]:
    """Each capsule directory and persona file of a library directory, in a stable order."""
    capsules, personas = root / "capsules", root / "personas"
    if capsules.is_dir():
        yield from sorted(d for d in capsules.iterdir() if (d / "capsule.yaml").is_file())
    if personas.is_dir():
        yield from sorted(
            f for f in personas.iterdir() if f.is_file() and f.suffix in (".yaml", ".yml")
        )
