"""The registry: where packages are published to and downloaded from, over the store.

The catalogue is shared by every tenant of an instance (it is what they install from); what a
tenant owns in it is its publisher names. Publishing is checked against the keys the publisher
*registered here*, not against any tenant's trust: the registry vouches that a publisher's own
key signed what it stores, and each installer then decides which publishers it trusts.

Search runs over an in-process index built from the store on first use and brought up to date
whenever the catalogue's fingerprint changes, so every gateway replica serves what any of them
published without a message bus.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from soma.errors import Forbidden, PackageRefused, PayloadTooLarge
from soma.marketplace.archive import MAX_PACKAGE_BYTES
from soma.marketplace.manifest import PackageKind, PackageSummary, PublishedVersion, Signature
from soma.marketplace.signing import (
    TrustedKeys,
    check_publisher_name,
    key_id_of,
    parse_public_key,
    verify_package,
)
from soma.store import PackageDoc, PublisherKeyRecord, Store

if TYPE_CHECKING:
    from soma.marketplace.search import SearchDoc, SearchIndex

IndexFactory = Callable[[], "SearchIndex"]
MAX_ARCHIVE_BYTES = MAX_PACKAGE_BYTES
"""Largest archive the registry stores; gzip only shrinks specs, so this never binds before the
unpacked limit does, but it refuses an oversized upload before any work is spent on it."""


def default_index() -> SearchIndex:
    """Lexical plus semantic search where an embedding model is available, lexical otherwise.

    Imported here, on the first search, so that starting a gateway never loads the search
    machinery or an embedding model that nobody asks for.
    """
    from soma.marketplace.embeddings import default_embedder
    from soma.marketplace.search import SearchIndex

    return SearchIndex(default_embedder())


class _RegisteredKeys(TrustedKeys):
    """The keys a publisher registered in this registry, as a verifier's trusted keys."""

    def __init__(self, publisher: str, keys: list[PublisherKeyRecord]) -> None:
        self._publisher = publisher
        self._keys = {k.key_id: k.public_key for k in keys}

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        text = self._keys.get(key_id) if publisher == self._publisher else None
        return None if text is None else parse_public_key(text)


class Registry:
    """Publish, list, download, search, yank and rate packages; thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        index_factory: IndexFactory = default_index,
        max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    ) -> None:
        self.store = store
        self._index_factory = index_factory
        self._max_archive_bytes = max_archive_bytes
        self._lock = threading.Lock()
        self._index: SearchIndex | None = None
        self._indexed: dict[str, SearchDoc] = {}
        self._state: tuple[int, int] | None = None

    # -- publishers ----------------------------------------------------------------------------

    def register_key(self, tenant_id: str, publisher: str, public_text: str) -> PublisherKeyRecord:
        """Register a signing key for ``publisher``; the first key claims the name for the
        tenant, and Forbidden if another tenant already owns it."""
        check_publisher_name(publisher)
        raw = parse_public_key(public_text)
        return self.store.add_publisher_key(tenant_id, publisher, key_id_of(raw), public_text)

    def publisher_keys(self, publisher: str) -> list[str]:
        """The publisher's registered public keys (``ed25519:…``), oldest first."""
        return [k.public_key for k in self.store.publisher_keys(publisher)]

    # -- publishing ----------------------------------------------------------------------------

    def publish(
        self, data: bytes, signature: Signature, *, tenant_id: str, user_id: str
    ) -> PublishedVersion:
        """Store a new, signed version.

        Refused (PackageRefused) unless the archive unpacks cleanly and one of the publisher's
        registered keys signed exactly these bytes; Forbidden unless the caller's tenant owns
        the publisher; Conflict if the version exists (versions are immutable, yanked or not).
        """
        if len(data) > self._max_archive_bytes:
            raise PayloadTooLarge(
                f"the archive is {len(data):,} bytes; the registry accepts at most "
                f"{self._max_archive_bytes:,}",
                hint="keep large data out of packages",
            )
        publisher = signature.publisher
        keys = self.store.publisher_keys(publisher)
        if not keys:
            raise PackageRefused(
                f"publisher '{publisher}' has no registered keys in this registry",
                hint=f"register your public key for '{publisher}' first "
                f"(POST /api/v1/market/publishers/{publisher}/keys), then publish again",
            )
        if keys[0].tenant_id != tenant_id:
            raise Forbidden(
                f"publisher '{publisher}' belongs to another tenant",
                hint="publish under a publisher name your tenant registered",
            )
        if signature.key_id not in {k.key_id for k in keys}:
            raise PackageRefused(
                f"key {signature.key_id} is not registered for publisher '{publisher}'",
                hint=f"register the key for '{publisher}' first, or sign with a registered one",
            )
        unpacked = verify_package(data, signature, _RegisteredKeys(publisher, keys))
        return self.store.add_package_version(
            unpacked.manifest,
            signature.digest,
            signature,
            data,
            tenant_id=tenant_id,
            user_id=user_id,
        )

    def yank(self, tenant_id: str, name: str, version: str, reason: str) -> PublishedVersion:
        """Mark a version as not to be picked by new installs (it stays downloadable)."""
        return self.store.yank_package_version(tenant_id, name, version, reason)

    def rate(self, tenant_id: str, user_id: str, name: str, stars: int) -> PackageSummary | None:
        """Record the user's 1 to 5 star rating; returns the package's updated summary (None if
        every version is yanked)."""
        self.store.rate_package(tenant_id, user_id, name, stars)
        found = self.store.package_summaries([name])
        return found[0] if found else None

    # -- reading -------------------------------------------------------------------------------

    def versions(self, name: str) -> list[PublishedVersion]:
        """Every version, yanked ones included, oldest first; NotFound if there is none."""
        return self.store.list_package_versions(name)

    def version(self, name: str, version: str) -> PublishedVersion:
        return self.store.get_package_version(name, version)

    def archive(self, name: str, version: str) -> bytes:
        """The archive's bytes, counted as a download."""
        return self.store.package_archive(name, version)

    def search(
        self, query: str = "", kind: PackageKind | None = None, limit: int = 20
    ) -> list[PackageSummary]:
        """Packages matching ``query``, best first, with their relevance as ``score``; an empty
        query lists the most downloaded."""
        words = query.strip()
        if not words:
            found = [s for s in self.store.package_summaries() if kind in (None, s.kind)]
            found.sort(key=lambda s: (-s.downloads, s.name))
            return found[:limit]
        hits = self._synced_index().search(words, limit=limit, kind=kind)
        summaries = {s.name: s for s in self.store.package_summaries([h.name for h in hits])}
        return [
            summaries[h.name].model_copy(update={"score": round(h.score, 4)})
            for h in hits
            if h.name in summaries
        ]

    def _synced_index(self) -> SearchIndex:
        """The index, first brought up to date with the store if the catalogue changed."""
        with self._lock:
            state = self.store.package_catalogue_state()
            if self._index is None:
                self._index = self._index_factory()
            if state != self._state:
                docs = {d.name: _search_doc(d) for d in self.store.all_package_docs()}
                for name in self._indexed.keys() - docs.keys():
                    self._index.remove(name)
                changed = [d for name, d in docs.items() if self._indexed.get(name) != d]
                if changed:
                    self._index.upsert_many(changed)
                self._indexed, self._state = docs, state
            return self._index


def _search_doc(doc: PackageDoc) -> SearchDoc:
    from soma.marketplace.search import SearchDoc

    return SearchDoc(
        name=doc.name,
        kind=doc.kind,
        publisher=doc.publisher,
        description=doc.description,
        tags=doc.tags,
    )


class LocalSource:
    """This instance's own registry as an installer's package source."""

    url = "local"

    def __init__(self, store: Store) -> None:
        self._store = store

    async def versions(self, name: str) -> list[PublishedVersion]:
        return await asyncio.to_thread(self._store.list_package_versions, name)

    async def archive(self, name: str, version: str) -> bytes:
        return await asyncio.to_thread(self._store.package_archive, name, version)

    async def publisher_keys(self, publisher: str) -> list[str]:
        keys = await asyncio.to_thread(self._store.publisher_keys, publisher)
        return [k.public_key for k in keys]
