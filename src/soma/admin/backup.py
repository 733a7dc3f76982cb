"""``soma admin backup`` / ``soma admin restore``: one archive with everything an instance is.

What a backup holds (``docs/operations.md``, "Backup and restore"):

- ``store/``: a consistent copy of the store. SQLite: the database file, copied with SQLite's
  online backup API (a snapshot even while the gateway writes). PostgreSQL: every table as JSON
  lines in dependency order, read in one REPEATABLE READ transaction (a snapshot). The JSON
  export is preferred to ``pg_dump`` because it restores into SQLite or PostgreSQL alike, needs
  no client binaries matching the server's version, and is checked row by row on the way in.
- ``home/``: the secret key, the marketplace keys, the project workspaces (git repositories),
  the provisioned local repositories and the tenant libraries.
- ``manifest.json`` (last): versions, the Alembic revision, row counts per table and the
  sha256 of every member.

The archive therefore contains secrets: it is written 0600, and whoever holds it can read the
tenants' vault. Restoring verifies the whole archive into a staging directory before touching
the target, refuses a non-empty target unless forced, and ends by checking row counts and every
tenant's audit chain.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from soma import __version__
from soma.admin import _rows
from soma.admin._archive import (
    HOME,
    MANIFEST,
    STORE,
    ArchiveWriter,
    BackupManifest,
    BackupRefused,
    extract_verified,
    manifest_bytes,
)
from soma.errors import SomaError
from soma.identity.secret import SECRET_FILE
from soma.settings import Settings
from soma.store import Store
from soma.store.tables import AuditEntry, Project, utcnow

SQLITE_MEMBER = f"{STORE}soma.db"
# What of SOMA_HOME is state (models/ is a download cache, temporal/ the embedded engine's own).
_SECRET_ENTRIES = (SECRET_FILE, "market/keys")
_HOME_ENTRIES = (*_SECRET_ENTRIES, "workspaces", "repos", "library")
_TENANT_LIBRARIES = "tenants"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: BackupManifest
    size_bytes: int
    seconds: float


@dataclass(frozen=True)
class RestoreResult:
    manifest: BackupManifest
    tenants_verified: list[str]
    audit_records: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


# --- backup ---------------------------------------------------------------------------------


def create_backup(settings: Settings, dest: Path) -> BackupResult:
    """Write a backup of the instance configured by ``settings`` to ``dest`` (mode 0600)."""
    started = time.monotonic()
    dest = Path(dest).expanduser().absolute()
    if not dest.parent.is_dir():
        raise SomaError(f"{dest.parent} is not a directory", hint="create it first")
    url = settings.store_url
    with Store.open(url) as store:  # migrated to head, so the revision below is this code's
        dialect = store.dialect
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tempfile.TemporaryDirectory() as scratch:
            writer = ArchiveWriter(raw)
            if dialect == "sqlite":
                revision, counts = _backup_sqlite(url, Path(scratch), writer)
                store_format = "sqlite"
            else:
                revision, counts = _backup_rows(url, Path(scratch), writer)
                store_format = "jsonl"
            for entry in _home_entries(settings.home):
                writer.add_tree(
                    HOME + entry, settings.home / entry, secret=entry in _SECRET_ENTRIES
                )
            manifest = BackupManifest(
                soma_version=__version__,
                created_at=utcnow(),
                alembic_revision=revision,
                store_format=store_format,
                source_dialect=dialect,
                source_home=str(settings.home.absolute()),
                secret_key=_secret_source(settings),
                tables=[table.name for table in _rows.TABLES],
                counts=counts,
                members=writer.members,
            )
            writer.add_bytes(MANIFEST, manifest_bytes(manifest))
            writer.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(dest, 0o600)
    return BackupResult(dest, manifest, dest.stat().st_size, time.monotonic() - started)


def _backup_sqlite(url: str, scratch: Path, writer: ArchiveWriter) -> tuple[str, dict[str, int]]:
    copy = scratch / "soma.db"
    source = sqlite3.connect(_sqlite_path(url))
    target = sqlite3.connect(copy)
    try:
        source.backup(target)  # the online backup API: a consistent snapshot
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
    finally:
        target.close()
        source.close()
    engine = _rows.engine_for(f"sqlite:///{copy}")
    try:
        with engine.connect() as conn:
            revision, counts = _rows.revision(conn), _rows.counts(conn)
    finally:
        engine.dispose()
    writer.add_file(SQLITE_MEMBER, copy, mode=0o600)
    return revision, counts


def _backup_rows(url: str, scratch: Path, writer: ArchiveWriter) -> tuple[str, dict[str, int]]:
    engine = _rows.engine_for(url)
    counts: dict[str, int] = {}
    try:
        # One snapshot for every table: REPEATABLE READ sees the database as of its first query.
        snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with snapshot as conn, conn.begin():
            revision = _rows.revision(conn)
            for table in _rows.TABLES:
                path = scratch / f"{table.name}.jsonl"
                with path.open("wb") as out:
                    counts[table.name] = _rows.write_jsonl(_rows.iter_rows(conn, table), table, out)
    finally:
        engine.dispose()
    for table in _rows.TABLES:
        writer.add_file(f"{STORE}{table.name}.jsonl", scratch / f"{table.name}.jsonl", mode=0o600)
    return revision, counts


def _home_entries(home: Path) -> list[str]:
    entries = [entry for entry in _HOME_ENTRIES if (home / entry).exists()]
    tenants = home / _TENANT_LIBRARIES
    if tenants.is_dir():
        for tenant in sorted(tenants.iterdir()):
            if (tenant / "library").is_dir():
                entries.append(f"{_TENANT_LIBRARIES}/{tenant.name}/library")
    return entries


def _secret_source(settings: Settings) -> str:
    if settings.secret_key is not None:
        return "environment"
    return "archive" if (settings.home / SECRET_FILE).is_file() else "absent"


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise SomaError(
            "an in-memory SQLite store cannot be backed up or restored",
            hint="set SOMA_HOME or SOMA_DATABASE_URL to a database on disk",
        )
    return Path(database).expanduser()


# --- restore --------------------------------------------------------------------------------


def restore_backup(settings: Settings, archive: Path, *, force: bool = False) -> RestoreResult:
    """Restore ``archive`` into the instance configured by ``settings``.

    Nothing in the target changes unless the whole archive verifies first. A target that holds
    data (home files or store rows) is refused unless ``force``, which replaces it.
    """
    started = time.monotonic()
    archive = Path(archive).expanduser().absolute()
    home = settings.home.expanduser().absolute()
    url = settings.store_url
    sqlite_target = make_url(url).get_backend_name() == "sqlite"
    occupied = _occupied(home, url, sqlite_target)
    if occupied and not force:
        raise BackupRefused(
            f"the restore target is not empty: {', '.join(occupied)}",
            hint="restore into an empty SOMA_HOME and database, or pass --force to replace"
            " what is there",
        )
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        manifest = extract_verified(archive, staging)
        _check_revision(manifest)
        warnings = _restore_home(staging, home, manifest)
        if sqlite_target and manifest.store_format == "sqlite":
            _restore_sqlite_file(staging / SQLITE_MEMBER, url)
        else:
            _restore_rows(staging, manifest, url)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _relocate_workspaces(url, manifest, home)
    tenants, records = _verify(url, manifest)
    return RestoreResult(manifest, tenants, records, time.monotonic() - started, warnings)


def _occupied(home: Path, url: str, sqlite_target: bool) -> list[str]:
    found = [
        str(home / entry)
        for entry in (*_HOME_ENTRIES, _TENANT_LIBRARIES)
        if (home / entry).exists() and not _empty_dir(home / entry)
    ]
    if sqlite_target and not _sqlite_path(url).exists():
        return found
    with Store.open(url) as store:
        where = store.url
    engine = _rows.engine_for(url)
    try:
        with engine.connect() as conn:
            if not _rows.is_empty(conn):
                found.append(f"the store at {where}")
    finally:
        engine.dispose()
    return found


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _check_revision(manifest: BackupManifest) -> None:
    if not _rows.known_revision(manifest.alembic_revision):
        raise BackupRefused(
            f"the backup's store is at migration {manifest.alembic_revision}, which this Soma"
            f" ({__version__}) does not know: it was made by a newer version",
            hint="restore it with that version (or a newer one)",
        )
    if manifest.store_format == "jsonl" and manifest.alembic_revision != _rows.head_revision():
        raise BackupRefused(
            f"the backup's rows are at migration {manifest.alembic_revision}; this Soma's"
            f" store is at {_rows.head_revision()}",
            hint="restore with the Soma version that made the backup, then upgrade",
        )


def _restore_home(staging: Path, home: Path, manifest: BackupManifest) -> list[str]:
    warnings: list[str] = []
    staged = staging / HOME.rstrip("/")
    for entry in _home_entries(staged) if staged.is_dir() else []:
        target = home / entry
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(staged / entry, target)
    if manifest.secret_key == "environment":
        warnings.append(
            "the source used SOMA_SECRET_KEY, which is not in the archive: set the same"
            " SOMA_SECRET_KEY here, or sessions and vault secrets will not work"
        )
    return warnings


def _restore_sqlite_file(staged: Path, url: str) -> None:
    target = _sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.move(staged, target)
    Store.open(url).close()  # migrates an older backup to this version's schema


def _restore_rows(staging: Path, manifest: BackupManifest, url: str) -> None:
    Store.open(url).close()
    source_engine = None
    if manifest.store_format == "sqlite":
        staged = staging / SQLITE_MEMBER
        source_url = f"sqlite:///{staged}"
        Store.open(source_url).close()  # brings an older backup to this version's schema
        source_engine = _rows.engine_for(source_url)
    engine = _rows.engine_for(url)
    try:
        with engine.begin() as conn:
            _rows.clear(conn)
            if source_engine is not None:
                with source_engine.connect() as source:
                    for table in _rows.TABLES:
                        _rows.load(conn, table, _rows.iter_rows(source, table))
            else:
                for table in _rows.TABLES:
                    path = staging / f"{STORE}{table.name}.jsonl"
                    if path.is_file():
                        _rows.load(conn, table, _rows.read_jsonl(path, table))
            _rows.reset_sequences(conn)
    finally:
        engine.dispose()
        if source_engine is not None:
            source_engine.dispose()


def _relocate_workspaces(url: str, manifest: BackupManifest, home: Path) -> None:
    """Projects record their workspace's absolute path: point them at the restored copies."""
    old = str(Path(manifest.source_home) / "workspaces") + os.sep
    new = str(home / "workspaces") + os.sep
    if old == new:
        return
    engine = _rows.engine_for(url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(select(Project.id, Project.workspace_path)).all()
            for project_id, path in rows:
                if path and path.startswith(old):
                    conn.execute(
                        update(Project)
                        .where(Project.id == project_id)
                        .values(workspace_path=new + path[len(old) :])
                    )
    finally:
        engine.dispose()


def _verify(url: str, manifest: BackupManifest) -> tuple[list[str], int]:
    engine = _rows.engine_for(url)
    try:
        with engine.connect() as conn:
            counts = _rows.counts(conn)
            audit_tenants = conn.execute(select(AuditEntry.__table__.c.tenant_id).distinct())
            tenants = set(audit_tenants.scalars())
    finally:
        engine.dispose()
    for table, expected in manifest.counts.items():
        if counts.get(table, 0) != expected:
            raise SomaError(
                f"the restored table {table} has {counts.get(table, 0)} rows; the backup has"
                f" {expected}",
                hint="the restore is incomplete: run it again with --force",
            )
    records = 0
    with Store.open(url) as store:
        tenants |= {tenant.id for tenant in store.list_tenants()}
        for tenant in sorted(tenants):
            result = store.verify_audit(tenant)
            if not result.ok:
                raise SomaError(
                    f"the restored audit chain of tenant {tenant} does not verify:"
                    f" {result.problem}",
                    hint="the backup's audit log was altered before it was taken; keep the"
                    " archive as evidence and restore an earlier one",
                )
            records += result.checked
    return sorted(tenants), records
