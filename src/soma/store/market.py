"""The marketplace's records in the store: publisher keys, package versions, ratings, installs
and the keys each tenant trusts.

Two kinds of data live here. The registry catalogue (publishers, versions, ratings) is shared by
every tenant by design: it is what they publish to and install from, so it is read without a
tenant scope; writes to it check ownership instead (a publisher name belongs to the tenant that
registered its first key). Installs and trust are a tenant's own and every query of them is
scoped by ``tenant_id``.

These methods keep records and guard their invariants (immutable versions, one owner per
publisher name, one publisher per package name); verifying signatures and archives is the job of
:mod:`soma.marketplace`, which sits above the store.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Row, case, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soma.errors import Conflict, Forbidden, NotFound, PackageRefused
from soma.marketplace.manifest import Manifest, PackageSummary, PublishedVersion, Signature
from soma.specs.versions import Version
from soma.store.records import (
    InstalledPackage,
    PackageDoc,
    PublisherKeyRecord,
    TrustedKeyRecord,
)
from soma.store.tables import (
    MarketInstall,
    MarketPublisher,
    MarketRating,
    MarketTrust,
    MarketVersion,
    utcnow,
)

# Every column but the archive: listings must not drag package bytes out of the database.
_LISTED = (
    MarketVersion.name,
    MarketVersion.version,
    MarketVersion.kind,
    MarketVersion.publisher,
    MarketVersion.description,
    MarketVersion.tags,
    MarketVersion.manifest,
    MarketVersion.digest,
    MarketVersion.signature,
    MarketVersion.size,
    MarketVersion.yanked,
    MarketVersion.yank_reason,
    MarketVersion.downloads,
    MarketVersion.published_at,
)


class MarketMixin:
    """The marketplace methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # -- publishers ----------------------------------------------------------------------------

    def add_publisher_key(
        self, tenant_id: str, publisher: str, key_id: str, public_key: str
    ) -> PublisherKeyRecord:
        """Register a signing key for ``publisher``, claiming the name if it is new.

        Forbidden if another tenant owns the name. Registering a key that is already there is a
        no-op, so a restart or a second process doing the same thing is harmless.
        """
        _check_key(key_id, public_key)
        try:
            with self._write() as session:
                _lock_publisher(session, publisher)
                owner = _owner(session, publisher)
                if owner is not None and owner != tenant_id:
                    raise _not_owner(publisher)
                row = session.get(MarketPublisher, (publisher, key_id))
                if row is None:
                    row = MarketPublisher(
                        publisher=publisher,
                        key_id=key_id,
                        tenant_id=tenant_id,
                        public_key=public_key,
                        created_at=utcnow(),
                    )
                    session.add(row)
                    session.flush()
                return PublisherKeyRecord.model_validate(row)
        except IntegrityError:  # lost a race with the same registration: it is there now
            keys = {k.key_id: k for k in self.publisher_keys(publisher)}
            if key_id in keys and keys[key_id].tenant_id == tenant_id:
                return keys[key_id]
            raise

    def publisher_keys(self, publisher: str) -> list[PublisherKeyRecord]:
        """The publisher's registered keys, oldest first (empty for an unknown publisher)."""
        query = (
            select(MarketPublisher)
            .where(MarketPublisher.publisher == publisher)
            .order_by(MarketPublisher.created_at, MarketPublisher.key_id)
        )
        with self._read() as session:
            return [PublisherKeyRecord.model_validate(k) for k in session.scalars(query)]

    def publisher_owner(self, publisher: str) -> str | None:
        """The tenant that owns the publisher name, or None while nobody has claimed it."""
        with self._read() as session:
            return _owner(session, publisher)

    # -- package versions ----------------------------------------------------------------------

    def add_package_version(
        self,
        manifest: Manifest,
        digest: str,
        signature: Signature,
        archive: bytes,
        *,
        tenant_id: str,
        user_id: str,
    ) -> PublishedVersion:
        """Record a new version. Versions are immutable: an existing name and version is a
        Conflict even when it was yanked, since installs elsewhere pin its digest.

        Forbidden unless ``tenant_id`` owns the manifest's publisher, or when the package name
        already belongs to another publisher (names are first come, first served).
        """
        row = MarketVersion(
            name=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            publisher=manifest.publisher,
            description=manifest.description,
            tags=list(manifest.tags),
            manifest=manifest.model_dump(mode="json"),
            digest=digest,
            signature=signature.model_dump(mode="json"),
            archive=archive,
            size=len(archive),
            yanked=False,
            yank_reason=None,
            downloads=0,
            published_at=utcnow(),
            published_tenant=tenant_id,
            published_by=user_id,
        )
        try:
            with self._write() as session:
                if _owner(session, manifest.publisher) != tenant_id:
                    raise _not_owner(manifest.publisher)
                other = session.scalar(
                    select(MarketVersion.publisher)
                    .where(
                        MarketVersion.name == manifest.name,
                        MarketVersion.publisher != manifest.publisher,
                    )
                    .limit(1)
                )
                if other is not None:
                    raise Forbidden(
                        f"package '{manifest.name}' belongs to publisher '{other}'",
                        hint="package names are unique across publishers; choose another name",
                    )
                if session.get(MarketVersion, (manifest.name, manifest.version)) is not None:
                    raise _immutable(manifest.ref)
                session.add(row)
                session.flush()
                return _published(row)
        except IntegrityError as exc:  # lost a race with another publish of the same version
            raise _immutable(manifest.ref) from exc

    def get_package_version(self, name: str, version: str) -> PublishedVersion:
        """One version (yanked ones included), or NotFound."""
        query = select(*_LISTED).where(MarketVersion.name == name, MarketVersion.version == version)
        with self._read() as session:
            row = session.execute(query).one_or_none()
        if row is None:
            raise _version_not_found(name, version)
        return _published(row)

    def list_package_versions(self, name: str) -> list[PublishedVersion]:
        """Every version of the package, oldest first by semver; NotFound if there is none."""
        query = select(*_LISTED).where(MarketVersion.name == name)
        with self._read() as session:
            rows = session.execute(query).all()
        if not rows:
            raise _package_not_found(name)
        found = [_published(r) for r in rows]
        return sorted(found, key=lambda v: Version.parse(v.manifest.version))

    def package_archive(self, name: str, version: str, *, count: bool = True) -> bytes:
        """The version's archive, counting the download in the same transaction (unless
        ``count`` is false: the console reading a package's evals is not a download).

        The count is an atomic ``downloads = downloads + 1``, so concurrent downloads on any
        number of gateway replicas are all counted. Yanked versions stay downloadable: an
        existing lock on one must keep installing.
        """
        where = (MarketVersion.name == name, MarketVersion.version == version)
        if not count:
            with self._read() as session:
                found = session.scalar(select(MarketVersion.archive).where(*where))
            if found is None:
                raise _version_not_found(name, version)
            return found
        with self._write() as session:
            counted = session.execute(
                update(MarketVersion)
                .where(*where)
                .values(downloads=MarketVersion.downloads + 1)
                .execution_options(synchronize_session=False)
            )
            if getattr(counted, "rowcount", 0) == 0:
                raise _version_not_found(name, version)
            archive = session.scalar(select(MarketVersion.archive).where(*where))
        assert archive is not None  # the row was just updated in this transaction
        return archive

    def yank_package_version(
        self, tenant_id: str, name: str, version: str, reason: str
    ) -> PublishedVersion:
        """Mark a version as not to be installed by new resolutions; only the tenant that owns
        its publisher may. Yanking again replaces the reason."""
        with self._write() as session:
            row = session.get(MarketVersion, (name, version), with_for_update=True)
            if row is None:
                raise _version_not_found(name, version)
            if _owner(session, row.publisher) != tenant_id:
                raise Forbidden(
                    f"only the owner of publisher '{row.publisher}' may yank {name}@{version}",
                    hint="ask the publisher to yank it, or leave it uninstalled",
                )
            row.yanked = True
            row.yank_reason = reason
            session.flush()
            return _published(row)

    # -- ratings and listings ------------------------------------------------------------------

    def rate_package(self, tenant_id: str, user_id: str, name: str, stars: int) -> None:
        """Record the user's rating of a package (1 to 5 stars), replacing an earlier one."""
        if not 1 <= stars <= 5:
            raise ValueError(f"stars must be 1 to 5, not {stars}")
        for attempt in range(2):
            try:
                with self._write() as session:
                    exists = select(MarketVersion.name).where(MarketVersion.name == name).limit(1)
                    if session.scalar(exists) is None:
                        raise _package_not_found(name)
                    row = session.get(MarketRating, (name, tenant_id, user_id))
                    if row is None:
                        row = MarketRating(name=name, tenant_id=tenant_id, user_id=user_id)
                        session.add(row)
                    row.stars = stars
                    row.rated_at = utcnow()
                return
            except IntegrityError:
                # The same user rated twice at once; the second pass updates the row.
                if attempt:
                    raise

    def package_summaries(self, names: Sequence[str] | None = None) -> list[PackageSummary]:
        """One summary per package (of ``names``, or all), by name.

        A summary describes the latest non-yanked version, with downloads summed over every
        version and the mean rating; a package whose versions are all yanked is left out.
        """
        versions = select(
            MarketVersion.name,
            MarketVersion.version,
            MarketVersion.kind,
            MarketVersion.publisher,
            MarketVersion.description,
            MarketVersion.tags,
            MarketVersion.yanked,
            MarketVersion.downloads,
        )
        ratings = select(
            MarketRating.name, func.avg(MarketRating.stars), func.count(MarketRating.stars)
        ).group_by(MarketRating.name)
        if names is not None:
            if not names:
                return []
            versions = versions.where(MarketVersion.name.in_(list(names)))
            ratings = ratings.where(MarketRating.name.in_(list(names)))
        with self._read() as session:
            rows = session.execute(versions).all()
            rated = {n: (float(mean), int(count)) for n, mean, count in session.execute(ratings)}
        downloads: dict[str, int] = defaultdict(int)
        latest: dict[str, tuple[Version, PackageSummary]] = {}
        for row in rows:
            downloads[row.name] += row.downloads
            if row.yanked:
                continue
            parsed = Version.parse(row.version)
            if row.name in latest and latest[row.name][0] >= parsed:
                continue
            mean, count = rated.get(row.name, (None, 0))
            latest[row.name] = (
                parsed,
                PackageSummary(
                    name=row.name,
                    kind=row.kind,
                    publisher=row.publisher,
                    latest=row.version,
                    description=row.description,
                    tags=list(row.tags),
                    rating=None if mean is None else round(mean, 2),
                    ratings=count,
                ),
            )
        return [
            summary.model_copy(update={"downloads": downloads[name]})
            for name, (_, summary) in sorted(latest.items())
        ]

    def all_package_docs(self) -> list[PackageDoc]:
        """The searchable text of every package that has a non-yanked version, by name."""
        return [
            PackageDoc(
                name=s.name,
                kind=s.kind,
                publisher=s.publisher,
                description=s.description,
                tags=tuple(s.tags),
            )
            for s in self.package_summaries()
        ]

    def package_catalogue_state(self) -> tuple[int, int]:
        """A cheap fingerprint of the catalogue (versions, yanked versions) that changes
        whenever a search index built from :meth:`all_package_docs` would, so each replica can
        tell when to rebuild its own."""
        query = select(
            func.count(), func.coalesce(func.sum(case((MarketVersion.yanked, 1), else_=0)), 0)
        ).select_from(MarketVersion)
        with self._read() as session:
            total, yanked = session.execute(query).one()
        return int(total), int(yanked)

    # -- installs ------------------------------------------------------------------------------

    def record_install(
        self, tenant_id: str, manifest: Manifest, digest: str, source: str
    ) -> InstalledPackage:
        """Record that the tenant has this version installed, replacing any other version of
        the same package (a tenant's library holds one version of each)."""
        values = {
            "version": manifest.version,
            "kind": manifest.kind,
            "publisher": manifest.publisher,
            "digest": digest,
            "manifest": manifest.model_dump(mode="json"),
            "source": source,
            "installed_at": utcnow(),
        }
        for attempt in range(2):
            try:
                with self._write() as session:
                    row = session.get(MarketInstall, (tenant_id, manifest.name))
                    if row is None:
                        row = MarketInstall(tenant_id=tenant_id, name=manifest.name)
                        session.add(row)
                    for column, value in values.items():
                        setattr(row, column, value)
                    session.flush()
                    return InstalledPackage.model_validate(row)
            except IntegrityError:
                if attempt:  # two installs of the same package at once; the second updates
                    raise
        raise AssertionError("unreachable")

    def list_installs(self, tenant_id: str) -> list[InstalledPackage]:
        """The tenant's installed packages, by name."""
        query = (
            select(MarketInstall)
            .where(MarketInstall.tenant_id == tenant_id)
            .order_by(MarketInstall.name)
        )
        with self._read() as session:
            return [InstalledPackage.model_validate(i) for i in session.scalars(query)]

    def remove_install(self, tenant_id: str, name: str) -> None:
        """Forget the tenant's install of ``name``; NotFound if it is not installed."""
        with self._write() as session:
            removed = session.execute(
                delete(MarketInstall)
                .where(MarketInstall.tenant_id == tenant_id, MarketInstall.name == name)
                .execution_options(synchronize_session=False)
            )
            if getattr(removed, "rowcount", 0) == 0:
                raise NotFound(
                    f"package '{name}' is not installed in tenant '{tenant_id}'",
                    hint="list the tenant's installed packages to see which are",
                )

    # -- trust ---------------------------------------------------------------------------------

    def trust_publisher_key(
        self, tenant_id: str, publisher: str, key_id: str, public_key: str
    ) -> TrustedKeyRecord:
        """Make the tenant trust a publisher key for installs; trusting it again is a no-op."""
        _check_key(key_id, public_key)
        for attempt in range(2):
            try:
                with self._write() as session:
                    row = session.get(MarketTrust, (tenant_id, publisher, key_id))
                    if row is None:
                        row = MarketTrust(
                            tenant_id=tenant_id,
                            publisher=publisher,
                            key_id=key_id,
                            public_key=public_key,
                            added_at=utcnow(),
                        )
                        session.add(row)
                        session.flush()
                    return TrustedKeyRecord.model_validate(row)
            except IntegrityError:
                if attempt:  # trusted at the same moment by another process; read it back
                    raise
        raise AssertionError("unreachable")

    def trusted_key(self, tenant_id: str, publisher: str, key_id: str) -> bytes | None:
        """The raw 32-byte key if the tenant trusts it, else None."""
        query = select(MarketTrust.public_key).where(
            MarketTrust.tenant_id == tenant_id,
            MarketTrust.publisher == publisher,
            MarketTrust.key_id == key_id,
        )
        with self._read() as session:
            text_key = session.scalar(query)
        return None if text_key is None else _parse_key(text_key)

    def list_trusted(self, tenant_id: str) -> list[TrustedKeyRecord]:
        """The keys the tenant trusts, by publisher then key id."""
        query = (
            select(MarketTrust)
            .where(MarketTrust.tenant_id == tenant_id)
            .order_by(MarketTrust.publisher, MarketTrust.key_id)
        )
        with self._read() as session:
            return [TrustedKeyRecord.model_validate(t) for t in session.scalars(query)]


# -- helpers -----------------------------------------------------------------------------------


def _parse_key(public_key: str) -> bytes:
    # Imported on use: only the marketplace's callers need the crypto library loaded.
    from soma.marketplace.signing import parse_public_key

    return parse_public_key(public_key)


def _check_key(key_id: str, public_key: str) -> None:
    """Refuse a key whose id does not match it: verifiers look keys up by id."""
    from soma.marketplace.signing import key_id_of

    actual = key_id_of(_parse_key(public_key))
    if actual != key_id:
        raise PackageRefused(
            f"key id '{key_id}' does not match the public key (its id is '{actual}')",
            hint="pass the id the key was generated with",
        )


def _lock_publisher(session: Session, publisher: str) -> None:
    """Serialize claims of one publisher name. SQLite write transactions are serialized
    already; on PostgreSQL two tenants registering different keys of a new name at once would
    both see it unclaimed, so a transaction-scoped advisory lock on the name orders them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"soma-market-publisher:{publisher}".encode()).digest()
    session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"),
        {"key": int.from_bytes(digest[:8], "big", signed=True)},
    )


def _owner(session: Session, publisher: str) -> str | None:
    query = select(MarketPublisher.tenant_id).where(MarketPublisher.publisher == publisher)
    return session.scalar(query.limit(1))


def _published(row: MarketVersion | Row[Any]) -> PublishedVersion:
    return PublishedVersion(
        manifest=Manifest.model_validate(row.manifest),
        digest=row.digest,
        signature=Signature.model_validate(row.signature),
        size=row.size,
        yanked=row.yanked,
        yank_reason=row.yank_reason,
        downloads=row.downloads,
        published_at=row.published_at,
    )


def _not_owner(publisher: str) -> Forbidden:
    return Forbidden(
        f"publisher '{publisher}' belongs to another tenant",
        hint="publish under a publisher name your tenant registered, or register a new one",
    )


def _immutable(ref: str) -> Conflict:
    return Conflict(
        f"{ref} is already published and versions are immutable; publish a new version",
        hint="bump the version in the capsule or persona and pack it again",
    )


def _package_not_found(name: str) -> NotFound:
    return NotFound(
        f"no package '{name}' in the registry",
        hint="search the registry for the package's exact name",
    )


def _version_not_found(name: str, version: str) -> NotFound:
    return NotFound(
        f"no version {version} of package '{name}' in the registry",
        hint=f"list the versions of '{name}' to see which exist",
    )
