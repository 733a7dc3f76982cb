"""Installing packages into a tenant's library: resolve, download, verify, write, record.

Where installed files go: ``$SOMA_HOME/library`` for the ``default`` tenant (the directory
``soma`` commands already read on top of the built-in catalogue) and
``$SOMA_HOME/tenants/<tenant>/library`` for every other tenant, laid out as a library directory:
``capsules/<name>/…`` and ``personas/<name>.yaml``.

Guarantees, and why:

- Nothing is written until every archive of the plan is downloaded and verified (digest equal
  to the registry's, signature by a key the tenant trusts, manifest equal to what the registry
  described), so a tampered dependency leaves the library exactly as it was.
- Files are written into a staging directory inside the library and renamed into place, and a
  failure while swapping puts back what was there: the library never holds half a package,
  because a half-written capsule would fail to load and take every other spec down with it.
- A package never shadows a built-in capsule or persona of the same name: an installed
  ``write-docs`` would silently change what every plan using the built-in one runs. Such an
  install is refused; rename the package. Files in the library that no install put there (a
  user's own specs) are never overwritten either.
- Built-in and the user's own specs satisfy dependencies like installed packages do, so a
  capsule whose persona is the built-in ``developer`` installs without a package for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from soma.errors import Conflict, NotFound, PackageRefused, SomaError
from soma.marketplace.archive import Unpacked, archive_digest, spec_file
from soma.marketplace.manifest import PublishedVersion
from soma.marketplace.resolver import resolve
from soma.marketplace.signing import (
    TrustedKeys,
    check_publisher_name,
    key_id_of,
    parse_public_key,
    verify_package,
)
from soma.marketplace.sources import PackageSource
from soma.settings import Settings
from soma.specs import tenant_libraries as libraries
from soma.specs.library import Library
from soma.specs.versions import parse_range
from soma.store import DEFAULT_TENANT, InstalledPackage, Store, TrustedKeyRecord
from soma.store.audit import digest

Progress = Callable[[str], None]
"""Receives one line per step (resolved, downloaded, verified, installed) for a user to read."""

_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_STAGING_PREFIX = ".installing-"
_LOCK_FILE = ".install.lock"


def tenant_library_dir(settings: Settings, tenant_id: str) -> Path:
    """The library directory a tenant's packages are installed into (see the module doc)."""
    return libraries.tenant_library_dir(settings.home, tenant_id)


def load_tenant_library(settings: Settings, tenant_id: str) -> Library:
    """The built-in catalogue plus the tenant's own library (installed packages included)."""
    return libraries.TenantLibraries(settings.home).get(tenant_id)


class StoreTrust:
    """The keys a tenant trusts, as recorded in the store with ``soma market trust``."""

    def __init__(self, store: Store, tenant_id: str) -> None:
        self._store = store
        self._tenant_id = tenant_id

    def trusted_key(self, publisher: str, key_id: str) -> bytes | None:
        return self._store.trusted_key(self._tenant_id, publisher, key_id)


@dataclass(frozen=True)
class _Verified:
    version: PublishedVersion
    unpacked: Unpacked
    source: str


class Installer:
    """Installs into, lists and uninstalls from one tenant's library.

    ``tools`` are the tool names this instance offers (default: the built-in registry's), which
    tool dependencies are checked against. ``progress`` receives one line per step. Installs,
    uninstalls and newly trusted keys join the tenant's audit chain as ``actor``: what an
    agent may run changes with them, so "who put this capsule here" needs an answer.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        tenant_id: str = DEFAULT_TENANT,
        trust: TrustedKeys | None = None,
        *,
        tools: Collection[str] | None = None,
        progress: Progress | None = None,
        actor: str = "system",
    ) -> None:
        self.store = store
        self.settings = settings
        self.tenant_id = tenant_id
        self.library_dir = tenant_library_dir(settings, tenant_id)
        self._trust = trust if trust is not None else StoreTrust(store, tenant_id)
        self._tools = tools
        self._progress = progress or (lambda _line: None)
        self._actor = actor

    # --- install -------------------------------------------------------------------------------

    async def install(
        self,
        source: PackageSource,
        name: str,
        range: str = "*",
    ) -> list[InstalledPackage]:
        """Install ``name@range`` and what it needs; returns what was installed or upgraded
        (empty when everything was already in place)."""
        existing = {p.name: p for p in await asyncio.to_thread(self.installed)}
        own = await asyncio.to_thread(self._own_library)
        available = _library_versions(Library.builtin())
        available.update(_library_versions(own))
        available.update({p.name: p.version for p in existing.values()})
        plan = await resolve(source, name, range, installed=available, tools=self._tool_names())
        self._say(f"resolved {name}@{range or '*'}: " + ", ".join(v.manifest.ref for v in plan))
        plan = self._skip_builtin(plan)
        wanted = [v for v in plan if not _same(existing.get(v.manifest.name), v)]
        for version in plan:
            if version not in wanted:
                self._say(f"{version.manifest.ref} is already installed")
            elif version.yanked:
                reason = f": {version.yank_reason}" if version.yank_reason else ""
                self._say(f"warning: {version.manifest.ref} is yanked{reason} (pinned exactly)")
        if not wanted:
            return []
        self._check_names(wanted, existing, own)
        _check_dependents(wanted, existing)
        await self._check_trusted(source, wanted)
        verified = await asyncio.gather(*(self._fetch(source, v) for v in wanted))
        records = await asyncio.to_thread(self._write_and_record, list(verified), existing)
        for record in records:
            self._say(f"installed {record.name}@{record.version} into {self._where(record)}")
        return records

    async def _fetch(self, source: PackageSource, version: PublishedVersion) -> _Verified:
        manifest = version.manifest
        data = await source.archive(manifest.name, manifest.version)
        self._say(f"downloaded {manifest.ref} ({len(data):,} bytes) from {source.url}")
        try:
            unpacked = await asyncio.to_thread(self._verify, version, data)
        except PackageRefused as exc:
            raise await self._refusal(source, version, exc) from None
        self._say(
            f"verified {manifest.ref}: sha256 {version.digest[:12]}…, signed by "
            f"{version.signature.publisher} (key {version.signature.key_id})"
        )
        return _Verified(version, unpacked, source.url)

    def _verify(self, version: PublishedVersion, data: bytes) -> Unpacked:
        manifest = version.manifest
        digest = archive_digest(data)
        if digest != version.digest or version.signature.digest != version.digest:
            raise PackageRefused(
                f"its archive has sha256 {digest}, but the registry lists {version.digest} "
                f"(and its signature is over {version.signature.digest})",
                hint="the archive was changed in the registry or on the way; do not install it, "
                "and tell the registry's operator",
            )
        unpacked = verify_package(data, version.signature, self._trust)
        if unpacked.manifest != manifest:
            raise PackageRefused(
                f"the registry describes it differently from its signed archive (signed: "
                f"{unpacked.manifest.ref}, dependencies "
                f"{[d.model_dump() for d in unpacked.manifest.dependencies]})",
                hint="the registry's listing was altered; install from the publisher's registry",
            )
        return unpacked

    async def _check_trusted(self, source: PackageSource, wanted: list[PublishedVersion]) -> None:
        """Refuse an untrusted publisher from the listing, before downloading anything; the
        signature itself is still checked against the bytes after download."""
        for version in wanted:
            signature = version.signature
            found = await asyncio.to_thread(
                self._trust.trusted_key, signature.publisher, signature.key_id
            )
            if found is None:
                refused = PackageRefused(
                    f"the package is signed by key {signature.key_id}, which is not trusted for "
                    f"publisher {signature.publisher}"
                )
                raise await self._refusal(source, version, refused)

    async def _refusal(
        self, source: PackageSource, version: PublishedVersion, exc: PackageRefused
    ) -> PackageRefused:
        """Name the package refused (a plan has several), and for an untrusted publisher, the
        refusal users meet first, say exactly how to proceed."""
        message = f"refused {version.manifest.ref} from {source.url}: {exc.message}"
        signature = version.signature
        trusted = await asyncio.to_thread(
            self._trust.trusted_key, signature.publisher, signature.key_id
        )
        if trusted is not None:
            return PackageRefused(message, hint=exc.hint)
        try:
            offered = await source.publisher_keys(signature.publisher)
        except SomaError:
            offered = []
        command = f"soma market trust {signature.publisher} 'ed25519:…'"
        if self.tenant_id != DEFAULT_TENANT:
            command += f" --tenant {self.tenant_id}"
        listed = f" ({source.url} lists: {', '.join(offered)})" if offered else ""
        return PackageRefused(
            message,
            hint=f"tenant '{self.tenant_id}' trusts no key {signature.key_id} of "
            f"{signature.publisher}; get {signature.publisher}'s public key from them directly"
            f"{listed}, check it, then run `{command}`",
        )

    def _skip_builtin(self, plan: list[PublishedVersion]) -> list[PublishedVersion]:
        """A built-in spec is never replaced: asking for its own version (every instance
        publishes its built-ins as publisher ``soma``) is a no-op, any other version a Conflict."""
        builtin = Library.builtin()
        kept: list[PublishedVersion] = []
        for version in plan:
            manifest = version.manifest
            specs = builtin.capsules if manifest.kind == "capsule" else builtin.personas
            versions = {s.version for s in specs(all_versions=True) if s.name == manifest.name}
            if not versions:
                kept.append(version)
            elif manifest.version in versions:
                self._say(f"{manifest.ref} is built in; nothing to install")
            else:
                raise Conflict(
                    f"cannot install {manifest.ref}: '{manifest.name}' is a built-in "
                    f"{manifest.kind} ({', '.join(sorted(versions))}), and installed packages "
                    "never shadow built-in ones",
                    hint="ask the publisher to rename the package, or copy and rename it into "
                    "your own library",
                )
        return kept

    def _check_names(
        self, wanted: list[PublishedVersion], existing: dict[str, InstalledPackage], own: Library
    ) -> None:
        """Never overwrite the user's own specs in the library: a same-named file would be
        replaced, and a same-named spec in another file would make the library fail to load."""
        for version in wanted:
            manifest = version.manifest
            if manifest.name in existing:
                continue
            specs = own.capsules if manifest.kind == "capsule" else own.personas
            taken = [self._target(manifest.kind, manifest.name)]
            if manifest.kind == "persona":
                taken.append(taken[0].with_suffix(".yml"))
            clash = next((p for p in taken if p.exists() or p.is_symlink()), None)
            if clash is None and any(s.name == manifest.name for s in specs(all_versions=True)):
                clash = self.library_dir / f"{manifest.kind}s"
            if clash is not None:
                raise Conflict(
                    f"cannot install {manifest.ref}: the library already has its own "
                    f"{manifest.kind} '{manifest.name}' ({clash}), not installed from a registry",
                    hint="rename or move your own spec, then install again",
                )

    def _own_library(self) -> Library:
        """Only what is in the tenant's directory (installed packages and the user's own)."""
        if not self.library_dir.is_dir():
            return Library()
        return Library.from_dirs(self.library_dir)

    # --- writing -------------------------------------------------------------------------------

    def _write_and_record(
        self, verified: list[_Verified], existing: dict[str, InstalledPackage]
    ) -> list[InstalledPackage]:
        self.library_dir.mkdir(parents=True, exist_ok=True)
        with self._locked(), self._staging() as staging:
            swaps: list[tuple[Path, Path | None]] = []
            try:
                staged = [(item, self._stage(staging, item)) for item in verified]
                for item, path in staged:
                    manifest = item.version.manifest
                    swaps.append(
                        self._swap(staging, path, self._target(manifest.kind, manifest.name))
                    )
                return self._record(verified, existing)
            except BaseException:
                for target, backup in reversed(swaps):
                    _restore(target, backup)
                raise

    def _record(
        self, verified: list[_Verified], existing: dict[str, InstalledPackage]
    ) -> list[InstalledPackage]:
        done: list[InstalledPackage] = []
        try:
            for item in verified:
                version = item.version
                done.append(
                    self.store.record_install(
                        self.tenant_id, version.manifest, version.digest, item.source
                    )
                )
            for record in done:
                self._audit(
                    "market.install",
                    {
                        "package": f"{record.name}@{record.version}",
                        "sha256": record.digest,
                        "source": record.source,
                    },
                )
        except BaseException:
            for record in done:
                previous = existing.get(record.name)
                if previous is None:
                    self.store.remove_install(self.tenant_id, record.name)
                else:
                    self.store.record_install(
                        self.tenant_id, previous.manifest, previous.digest, previous.source
                    )
            raise
        return done

    def _stage(self, staging: Path, item: _Verified) -> Path:
        manifest = item.version.manifest
        files = item.unpacked.files
        staging = staging / "new"
        staging.mkdir(exist_ok=True)
        if manifest.kind == "persona":
            path = staging / f"{manifest.name}.yaml"
            path.write_bytes(files[spec_file(item.unpacked)])
            return path
        root = staging / manifest.name
        for relative, data in files.items():
            parts = PurePosixPath(relative).parts
            if (
                not parts
                or any(part in {"", ".", ".."} for part in parts)
                or relative.startswith("/")
            ):
                raise PackageRefused(f"{manifest.ref} holds an unsafe path {relative!r}")
            path = root.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    def _swap(self, staging: Path, new: Path, target: Path) -> tuple[Path, Path | None]:
        """Move ``new`` to ``target``, keeping what was there in staging for a rollback."""
        target.parent.mkdir(parents=True, exist_ok=True)
        backup: Path | None = None
        if target.exists() or target.is_symlink():
            backup = staging / "old" / f"{target.parent.name}-{target.name}"
            backup.parent.mkdir(exist_ok=True)
            os.rename(target, backup)
        try:
            os.rename(new, target)
        except BaseException:
            if backup is not None:
                os.rename(backup, target)
            raise
        return target, backup

    def _target(self, kind: str, name: str) -> Path:
        if kind == "persona":
            return self.library_dir / "personas" / f"{name}.yaml"
        return self.library_dir / "capsules" / name

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        path = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.library_dir))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One install or uninstall at a time per library, across processes (CLI and gateway
        may change the same tenant's library)."""
        with open(self.library_dir / _LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # --- the rest ------------------------------------------------------------------------------

    def installed(self) -> list[InstalledPackage]:
        """The tenant's installed packages."""
        return self.store.list_installs(self.tenant_id)

    def uninstall(self, name: str) -> InstalledPackage:
        """Remove an installed package's files and record; refused while another installed
        package depends on it, since that one would stop loading or running."""
        records = self.installed()
        target = next((p for p in records if p.name == name), None)
        if target is None:
            names = ", ".join(sorted(p.name for p in records)) or "none"
            raise NotFound(
                f"'{name}' is not installed in tenant '{self.tenant_id}'",
                hint=f"installed packages: {names}",
            )
        dependents = [
            p.manifest.ref
            for p in records
            if p.name != name
            and any(d.name == name and d.kind == target.kind for d in p.manifest.dependencies)
        ]
        if dependents:
            verb = "depends" if len(dependents) == 1 else "depend"
            raise Conflict(
                f"cannot uninstall {target.name}@{target.version}: "
                f"{', '.join(sorted(dependents))} {verb} on it",
                hint="uninstall those first",
            )
        self.library_dir.mkdir(parents=True, exist_ok=True)
        path = self._target(target.kind, target.name)
        with self._locked(), self._staging() as staging:
            moved = staging / "removed"
            present = path.exists() or path.is_symlink()
            if present:
                os.rename(path, moved)
            try:
                self.store.remove_install(self.tenant_id, name)
            except BaseException:
                if present:
                    os.rename(moved, path)
                raise
        self._audit("market.uninstall", {"package": f"{target.name}@{target.version}"})
        self._say(f"uninstalled {target.name}@{target.version} from {path}")
        return target

    def trust(self, publisher: str, public_text: str) -> TrustedKeyRecord:
        """Trust a publisher's key for this tenant's installs (after checking it out of band)."""
        name = check_publisher_name(publisher)
        text = public_text.strip()
        key_id = key_id_of(parse_public_key(text))
        record = self.store.trust_publisher_key(self.tenant_id, name, key_id, text)
        self._audit("market.trust", {"publisher": name, "key_id": key_id})
        return record

    def trusted(self) -> list[TrustedKeyRecord]:
        return self.store.list_trusted(self.tenant_id)

    def _audit(self, operation: str, subject: dict[str, str]) -> None:
        self.store.append_audit(
            tenant_id=self.tenant_id,
            project_id=None,
            node_id=None,
            actor=self._actor,
            action_kind="market",
            tool=operation,
            arguments_digest=digest(subject),
            rule_id=None,
            effect="allow",
            reason=f"{operation} " + " ".join(f"{k}={v}" for k, v in sorted(subject.items())),
        )

    def _tool_names(self) -> Collection[str]:
        if self._tools is None:
            from soma.tools import default_registry

            self._tools = default_registry().names()
        return self._tools

    def _where(self, record: InstalledPackage) -> Path:
        return self._target(record.kind, record.name)

    def _say(self, line: str) -> None:
        self._progress(line)


def _same(record: InstalledPackage | None, version: PublishedVersion) -> bool:
    return (
        record is not None
        and record.version == version.manifest.version
        and record.digest == version.digest
    )


def _library_versions(library: Library) -> dict[str, str]:
    """Name → highest version of every capsule and persona already in the library."""
    found = {spec.name: spec.version for spec in library.personas()}
    found.update({spec.name: spec.version for spec in library.capsules()})
    return found


def _check_dependents(
    wanted: list[PublishedVersion], existing: dict[str, InstalledPackage]
) -> None:
    """An upgrade must not break an installed package that stays: check its ranges too."""
    new = {v.manifest.name: v for v in wanted}
    for record in existing.values():
        if record.name in new:
            continue
        for dep in record.manifest.dependencies:
            version = new.get(dep.name)
            if version is None or dep.kind != version.manifest.kind:
                continue
            if not parse_range(dep.range).matches(version.manifest.version):
                raise Conflict(
                    f"installing {version.manifest.ref} would break {record.manifest.ref}, which "
                    f"requires {dep.name} {dep.range}",
                    hint=f"install a version of {dep.name} matching {dep.range}, or upgrade "
                    f"{record.name} first",
                )


def _restore(target: Path, backup: Path | None) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    if backup is not None:
        os.rename(backup, target)
