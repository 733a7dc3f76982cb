"""Backup and restore: a populated instance survives ``soma admin backup`` / ``restore`` whole.

The source instance is built through the store and the services (no engine): two tenants with
users, API keys, a vault secret, projects with nodes, events and reviews, audit records, usage,
memory, the built-in marketplace catalogue (binary archives, the instance key), a tenant library
and a workspace with commits. It is restored SQLite → SQLite (through the CLI), SQLite →
PostgreSQL and back again PostgreSQL → SQLite (the JSON-lines export), and each restored
instance must hold the same records, verify its audit chains, authenticate the old API keys,
decrypt the vault and show the same git history. Tampered, truncated and malicious archives are
refused before anything is written.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from soma.admin import BackupRefused, create_backup, restore_backup
from soma.admin._rows import TABLES
from soma.cli.main import app
from soma.identity import Identity, load_secret_key
from soma.marketplace.catalogue import publish_builtin_catalogue, trust_catalogue_keys
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from soma.store.audit import digest
from soma.store.tables import utcnow
from soma.workspace.identity import AgentIdentity
from soma.workspace.workspace import Workspace

TENANTS = ("acme", "globex")
VAULT_VALUE = "ghp_" + "R3storeMe" * 4


@dataclass(frozen=True)
class Instance:
    settings: Settings
    keys: dict[str, str]  # tenant -> API key plaintext
    projects: dict[str, str]  # project id -> tenant


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    settings = Settings(home=tmp_path_factory.mktemp("source"))
    keys: dict[str, str] = {}
    projects: dict[str, str] = {}
    with Store.open(settings.store_url) as store:
        secret = load_secret_key(settings)
        identity = Identity(store, secret)
        vault = Vault(store, secret)
        publish_builtin_catalogue(store, settings)
        for tenant in TENANTS:
            identity.create_tenant(tenant, tenant.title())
            trust_catalogue_keys(store, tenant)
            user = identity.create_user(tenant, f"dev@{tenant}.test", "developer")
            identity.create_user(tenant, f"rev@{tenant}.test", "reviewer")
            _, keys[tenant] = identity.create_key(tenant, user.id, "ci")
            vault.set(tenant, "github.token", f"{VAULT_VALUE}-{tenant}", actor="test")
            for n in range(2):
                project_id = f"{tenant}-p{n}"
                projects[project_id] = tenant
                _populate_project(store, settings, tenant, project_id)
        library = settings.home / "tenants" / "acme" / "library" / "personas"
        library.mkdir(parents=True)
        (library / "helper.yaml").write_text("name: helper\n", encoding="utf-8")
    return Instance(settings, keys, projects)


def _populate_project(store: Store, settings: Settings, tenant: str, project_id: str) -> None:
    workspace = Workspace.open(settings.workspaces_dir, project_id)
    author = AgentIdentity(persona="developer", capsule="implement", run_id="r1")
    shas = []
    for n in range(3):
        (workspace.path / f"file{n}.txt").write_text(f"content {n}\n", encoding="utf-8")
        shas.append(workspace.commit(f"step {n}", author))
    store.create_project(
        project_id,
        f"goal of {project_id}",
        tenant_id=tenant,
        status="running",
        planner="template",
        plan={"nodes": [{"id": "build"}, {"id": "test"}]},
        workspace_path=str(workspace.path),
        model="synthetic",
    )
    for node in ("build", "test"):
        store.upsert_node(
            project_id,
            node,
            tenant_id=tenant,
            status="succeeded",
            capsule="implement@1.0.0",
            output={"summary": f"{node} done", "ratio": 0.5},
            commit_sha=shas[-1],
        )
        for kind in ("node_started", "node_finished"):
            store.add_event(project_id, kind, f"{node} {kind}", node, {"n": 1}, tenant_id=tenant)
        store.open_review(project_id, node, 1, tenant_id=tenant)
        store.decide_review(project_id, node, 1, True, "lgtm", "rev", tenant_id=tenant)
        store.append_audit(
            tenant_id=tenant,
            project_id=project_id,
            node_id=node,
            actor="developer",
            action_kind="tool_call",
            tool="fs.write",
            arguments_digest=digest({"path": f"{node}.txt"}),
            rule_id=None,
            effect="allow",
            reason="default allow",
            key=f"{project_id}:{node}:audit",
        )
        store.record_usage(
            tenant,
            f"{project_id}:{node}:model",
            "model",
            project_id=project_id,
            node_id=node,
            model="synthetic",
            input_tokens=120,
            output_tokens=30,
            cost_micros=42,
        )
        store.add_memory(
            id=f"{project_id}-{node}",
            tenant_id=tenant,
            scope=f"project:{project_id}",
            kind="lesson",
            text=f"lesson from {node}",
            meta={"node": node},
            vector=np.arange(8, dtype=np.float32).tobytes(),
            created_at=utcnow(),
        )


# --- what "the same instance" means ---------------------------------------------------------


def snapshot(settings: Settings, projects: dict[str, str]) -> dict[str, Any]:
    """Everything the assertions compare, with machine-specific paths left out."""
    with Store.open(settings.store_url) as store:
        result: dict[str, Any] = {"tenants": [t.model_dump() for t in store.list_tenants()]}
        for project_id, tenant in sorted(projects.items()):
            project = store.get_project(project_id, tenant).model_dump()
            workspace = Path(project.pop("workspace_path"))
            assert workspace == (settings.workspaces_dir / project_id).resolve()
            result[project_id] = {
                "project": project,
                "nodes": [n.model_dump() for n in store.list_nodes(project_id, tenant_id=tenant)],
                "events": [e.model_dump() for e in store.list_events(project_id, tenant_id=tenant)],
                "git": Workspace.open(settings.workspaces_dir, project_id).log(50),
            }
        for tenant in TENANTS:
            chain = store.verify_audit(tenant)
            assert chain.ok, chain.problem
            result[f"audit:{tenant}"] = (chain.checked, chain.head_hash)
            result[f"reviews:{tenant}"] = [
                r.model_dump() for r in store.list_reviews(None, tenant_id=tenant)
            ]
            result[f"keys:{tenant}"] = [k.model_dump() for k in store.list_api_keys(tenant)]
            result[f"memory:{tenant}"] = store.count_memory(tenant)
    return result


def assert_same_instance(
    source: Instance, restored: Settings, *, expected: Settings | None = None
) -> None:
    """``restored`` holds what ``expected`` (default: the source) holds, and works."""
    expected = expected or source.settings
    assert snapshot(restored, source.projects) == snapshot(expected, source.projects)
    with Store.open(restored.store_url) as store:
        secret = load_secret_key(restored)
        assert secret == load_secret_key(source.settings)
        identity = Identity(store, secret)
        vault = Vault(store, secret)
        for tenant, key in source.keys.items():
            assert identity.authenticate(key).tenant_id == tenant
            assert vault.get(tenant, "github.token") == f"{VAULT_VALUE}-{tenant}"
        # New rows get fresh ids after the restored ones (sequences moved on PostgreSQL).
        last = store.list_events("acme-p0", tenant_id="acme")[-1].id
        assert store.add_event("acme-p0", "note", "after restore", tenant_id="acme") > last
        store.append_audit(
            tenant_id="acme",
            project_id=None,
            node_id=None,
            actor="test",
            action_kind="note",
            tool=None,
            arguments_digest=digest("after"),
            rule_id=None,
            effect="allow",
            reason="after restore",
        )
        assert store.verify_audit("acme").ok
    instance_key = restored.home / "market" / "keys" / "soma.key"
    assert instance_key.read_bytes() == (source.settings.home / "market/keys/soma.key").read_bytes()
    assert (restored.home / "tenants/acme/library/personas/helper.yaml").is_file()
    assert stat.S_IMODE((restored.home / "secret.key").stat().st_mode) == 0o600


# --- round trips ----------------------------------------------------------------------------


def test_sqlite_to_sqlite_through_the_cli(source: Instance, tmp_path: Path) -> None:
    runner = CliRunner()
    archive = tmp_path / "soma-backup.tar.gz"
    result = runner.invoke(
        app, ["admin", "backup", str(archive)], env={"SOMA_HOME": str(source.settings.home)}
    )
    assert result.exit_code == 0, result.output
    assert "contains secrets" in result.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    target = tmp_path / "restored"
    env = {"SOMA_HOME": str(target), "COLUMNS": "200"}
    result = runner.invoke(app, ["admin", "restore", str(archive)], env=env)
    assert result.exit_code == 0, result.output
    assert "audit chains of 3 tenants verify" in result.stdout
    assert_same_instance(source, Settings(home=target))

    # A second restore onto the now populated home is refused, and --force replaces it.
    result = runner.invoke(app, ["admin", "restore", str(archive)], env=env)
    assert result.exit_code == 2
    assert "not empty" in result.stderr
    assert "--force" in result.stderr
    result = runner.invoke(app, ["admin", "restore", str(archive), "--force"], env=env)
    assert result.exit_code == 0, result.output
    assert_same_instance(source, Settings(home=target))


def test_sqlite_to_postgresql_and_back(source: Instance, tmp_path: Path, postgres_url: str) -> None:
    archive = tmp_path / "from-sqlite.tar.gz"
    backup = create_backup(source.settings, archive)
    assert backup.manifest.store_format == "sqlite"
    assert backup.manifest.counts["memory_items"] == 2 * len(source.projects)

    on_postgres = Settings(home=tmp_path / "pg-home", database_url=postgres_url)
    restored = restore_backup(on_postgres, archive)
    assert set(restored.tenants_verified) == {"default", *TENANTS}
    assert_same_instance(source, on_postgres)

    # PostgreSQL's backup is the portable JSON-lines export; it restores into SQLite.
    again = tmp_path / "from-postgres.tar.gz"
    manifest = create_backup(on_postgres, again).manifest
    assert manifest.store_format == "jsonl"
    assert {f"store/{t.name}.jsonl" for t in TABLES} <= set(manifest.members)
    on_sqlite = Settings(home=tmp_path / "sqlite-home")
    restore_backup(on_sqlite, again)
    # The checks on PostgreSQL added an event and an audit record and used the keys: the copy
    # is of the PostgreSQL instance as it is now.
    assert manifest.counts["events"] == backup.manifest.counts["events"] + 1
    assert_same_instance(source, on_sqlite, expected=on_postgres)


def test_non_empty_postgresql_target_needs_force(
    source: Instance, tmp_path: Path, postgres_url: str
) -> None:
    archive = create_backup(source.settings, tmp_path / "b.tar.gz").path
    target = Settings(home=tmp_path / "pg-home", database_url=postgres_url)
    with Store.open(postgres_url) as store:
        store.create_project("stray", "already here")
    with pytest.raises(BackupRefused, match="not empty: the store at"):
        restore_backup(target, archive)
    restore_backup(target, archive, force=True)
    with Store.open(postgres_url) as store, pytest.raises(Exception, match="no project 'stray'"):
        store.get_project("stray")
    assert_same_instance(source, target)


# --- refusals -------------------------------------------------------------------------------


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive, "r:gz") as tar:
        out = []
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isfile() else None
            out.append((info, handle.read() if handle is not None else None))
        return out


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture(scope="module")
def archive(source: Instance, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_backup(source.settings, tmp_path_factory.mktemp("archive") / "b.tar.gz").path


def assert_untouched(home: Path) -> None:
    leftovers = [p.name for p in home.iterdir()] if home.exists() else []
    assert leftovers == [], leftovers


def test_tampered_member_is_refused_by_name(archive: Path, tmp_path: Path) -> None:
    members = _members(archive)
    tampered = []
    for info, data in members:
        if info.name.endswith("acme-p0/file1.txt"):
            data = b"rewritten\n"
        tampered.append((info, data))
    bad = _write(tmp_path / "tampered.tar.gz", tampered)
    home = tmp_path / "home"
    with pytest.raises(BackupRefused, match=r"'home/workspaces/acme-p0/file1.txt' does not match"):
        restore_backup(Settings(home=home), bad)
    assert_untouched(home)

    # A member removed, or one added that the manifest does not list, are refused too.
    dropped = [(i, d) for i, d in members if not i.name.endswith("helper.yaml")]
    with pytest.raises(BackupRefused, match=r"manifest lists 'home/tenants/acme/.*helper.yaml'"):
        restore_backup(Settings(home=home), _write(tmp_path / "dropped.tar.gz", dropped))
    extra = tarfile.TarInfo("home/workspaces/acme-p0/planted.sh")
    added = [(extra, b"echo hi\n"), *members]
    with pytest.raises(BackupRefused, match=r"'home/workspaces/acme-p0/planted.sh'.*not list"):
        restore_backup(Settings(home=home), _write(tmp_path / "added.tar.gz", added))
    assert_untouched(home)


def test_truncated_archive_is_refused(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    home = tmp_path / "home"
    with pytest.raises(BackupRefused, match=r"truncated or corrupt: reading failed at member '"):
        restore_backup(Settings(home=home), cut)
    assert_untouched(home)
    # Cut exactly before the manifest (a clean tar without it).
    no_manifest = [(i, d) for i, d in _members(archive) if i.name != "manifest.json"]
    with pytest.raises(BackupRefused, match=r"holds no manifest\.json"):
        restore_backup(Settings(home=home), _write(tmp_path / "nomanifest.tar.gz", no_manifest))
    assert_untouched(home)


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [
        ("../escaped.txt", tarfile.REGTYPE, ""),
        ("home/../../escaped.txt", tarfile.REGTYPE, ""),
        ("/tmp/escaped.txt", tarfile.REGTYPE, ""),
        ("home/workspaces/link", tarfile.SYMTYPE, "../../../escaped.txt"),
        ("home/workspaces/abs", tarfile.SYMTYPE, "/etc/passwd"),
        ("home/workspaces/hard", tarfile.LNKTYPE, "home/secret.key"),
        ("home/dev", tarfile.CHRTYPE, ""),
    ],
)
def test_unsafe_member_is_refused(
    archive: Path, tmp_path: Path, name: str, kind: bytes, link: str
) -> None:
    evil = tarfile.TarInfo(name)
    evil.type = kind
    evil.linkname = link
    members = [(evil, b"pwned\n" if kind == tarfile.REGTYPE else None), *_members(archive)]
    bad = _write(tmp_path / "evil.tar.gz", members)
    home = tmp_path / "deep" / "home"
    with pytest.raises(BackupRefused, match=r"unsafe|outside the restored home|a backup holds"):
        restore_backup(Settings(home=home), bad)
    assert_untouched(home)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_gzip_bomb_is_capped(tmp_path: Path) -> None:
    from soma.admin._archive import extract_verified

    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("store/soma.db")
        info.size = 4 * 2**20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 64 * 1024
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(BackupRefused, match="more than 1048576 bytes"):
        extract_verified(bomb, staging, max_bytes=2**20)
    assert sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) == 0
    assert os.listdir(staging) == []
