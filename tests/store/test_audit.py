from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.pool import NullPool

from soma.store import AuditRecord, Store
from soma.store.audit import GENESIS_HASH, audit_hash
from soma.store.store import MIGRATIONS_DIR

DIGEST = hashlib.sha256(b'{"path":"README.md"}').hexdigest()


def _append(store: Store, n: int = 0, **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "project_id": "p1",
        "node_id": "n1",
        "actor": "developer (implement-feature)",
        "action_kind": "tool_call",
        "tool": "fs.write",
        "arguments_digest": DIGEST,
        "rule_id": "no-secrets",
        "effect": "allow",
        "reason": f"decision {n}",
    }
    fields.update(overrides)
    return store.append_audit(**fields)


@pytest.fixture
def raw(store_url: str) -> Iterator[Engine]:
    """A second engine on the store's database, for tampering behind the store's back."""
    engine = create_engine(store_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def test_chain_links(store: Store) -> None:
    records = [_append(store, i) for i in range(5)]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
        assert after.id > before.id
    first = records[0]
    assert first.tenant_id == "default"
    assert first.created_at.tzinfo is not None
    assert first.key is None
    # The documented formula, reproduced independently of the store's code.
    payload = {
        "tenant_id": "default",
        "project_id": "p1",
        "node_id": "n1",
        "actor": "developer (implement-feature)",
        "action_kind": "tool_call",
        "tool": "fs.write",
        "arguments_digest": DIGEST,
        "rule_id": "no-secrets",
        "effect": "allow",
        "reason": "decision 0",
        "key": None,
        "created_at": first.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first.hash == hashlib.sha256((GENESIS_HASH + canonical).encode()).hexdigest()
    # What the store reads back is what it hashed (timestamps survive the round trip exactly).
    assert store.list_audit() == records
    for record in records:
        assert audit_hash(record.prev_hash, record) == record.hash


def test_nullable_fields_and_unicode(store: Store) -> None:
    record = _append(
        store, project_id=None, node_id=None, tool=None, rule_id=None, reason='refusé ✓ "q"'
    )
    [stored] = store.list_audit()
    assert stored == record
    assert stored.reason == 'refusé ✓ "q"'
    assert store.verify_audit().ok


def test_verify_ok_and_empty(store: Store) -> None:
    empty = store.verify_audit()
    assert (empty.ok, empty.checked, empty.first_bad_id, empty.problem) == (True, 0, None, None)
    assert empty.head_hash is None
    records = [_append(store, i) for i in range(7)]
    result = store.verify_audit()
    assert result.ok
    assert result.checked == 7
    assert result.first_bad_id is None
    assert result.problem is None
    assert result.head_hash == records[-1].hash


def test_list_filters_and_paging(store: Store) -> None:
    ids = [_append(store, i, project_id="p1" if i % 2 else "p2").id for i in range(10)]
    _append(store, 99, tenant_id="other")
    assert [r.id for r in store.list_audit()] == ids
    assert [r.id for r in store.list_audit(project_id="p1")] == ids[1::2]
    assert [r.id for r in store.list_audit(project_id="p2", limit=2)] == ids[0:4:2]
    page = store.list_audit(limit=4)
    rest = store.list_audit(after_id=page[-1].id)
    assert [r.id for r in page + rest] == ids
    assert [r.reason for r in store.list_audit(tenant_id="other")] == ["decision 99"]
    assert store.list_audit(tenant_id="nobody") == []


def test_rejects_a_malformed_digest(store: Store) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _append(store, arguments_digest="not-a-digest")
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _append(store, arguments_digest=DIGEST.upper())
    assert store.list_audit() == []


@pytest.mark.parametrize(
    ("column", "value"), [("reason", "nothing to see"), ("effect", "deny"), ("actor", "admin")]
)
def test_edited_record_is_detected(store: Store, raw: Engine, column: str, value: str) -> None:
    records = [_append(store, i) for i in range(5)]
    with raw.begin() as conn:
        conn.execute(
            text(f"UPDATE audit_log SET {column} = :value WHERE id = :id"),
            {"value": value, "id": records[2].id},
        )
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_id == records[2].id
    assert result.checked == 3
    assert result.problem is not None
    assert "modified" in result.problem
    assert result.head_hash == records[1].hash


def test_edited_timestamp_is_detected(store: Store, raw: Engine) -> None:
    records = [_append(store, i) for i in range(3)]
    with raw.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET created_at = '2000-01-01 00:00:00' WHERE id = :id"),
            {"id": records[0].id},
        )
    assert store.list_audit()[0].created_at.year == 2000
    assert store.verify_audit().first_bad_id == records[0].id


def test_rehashed_edit_breaks_the_next_link(store: Store, raw: Engine) -> None:
    """Editing a record *and* fixing its own hash still breaks the chain at its successor."""
    records = [_append(store, i) for i in range(4)]
    forged = records[1].model_copy(update={"effect": "deny", "reason": "forged"})
    with raw.begin() as conn:
        conn.execute(
            text(
                "UPDATE audit_log SET effect = 'deny', reason = 'forged', hash = :h WHERE id = :id"
            ),
            {"h": audit_hash(forged.prev_hash, forged), "id": records[1].id},
        )
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_id == records[2].id
    assert result.problem is not None
    assert f"record {records[1].id}" in result.problem


def test_deleted_middle_record_is_detected(store: Store, raw: Engine) -> None:
    records = [_append(store, i) for i in range(5)]
    with raw.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": records[2].id})
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_id == records[3].id
    assert result.problem is not None
    assert "deleted" in result.problem


def test_deleted_first_record_is_detected(store: Store, raw: Engine) -> None:
    records = [_append(store, i) for i in range(3)]
    with raw.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": records[0].id})
    result = store.verify_audit()
    assert result.first_bad_id == records[1].id
    assert result.head_hash is None


def test_reordered_records_are_detected(store: Store, raw: Engine) -> None:
    records = [_append(store, i) for i in range(5)]
    a, b = records[1].id, records[3].id
    with raw.begin() as conn:  # swap the positions of two records
        conn.execute(text("UPDATE audit_log SET id = -1 WHERE id = :a"), {"a": a})
        conn.execute(text("UPDATE audit_log SET id = :a WHERE id = :b"), {"a": a, "b": b})
        conn.execute(text("UPDATE audit_log SET id = :b WHERE id = -1"), {"b": b})
    result = store.verify_audit()
    assert not result.ok
    assert result.first_bad_id == a
    assert result.checked == 2


def test_record_moved_to_another_tenant_breaks_both(store: Store, raw: Engine) -> None:
    mine = [_append(store, i, tenant_id="A") for i in range(3)]
    theirs = [_append(store, i, tenant_id="B") for i in range(3)]
    with raw.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET tenant_id = 'B' WHERE id = :id"), {"id": mine[1].id}
        )
    assert store.verify_audit("A").first_bad_id == mine[2].id
    assert store.verify_audit("B").first_bad_id == mine[1].id
    assert theirs  # B's own records were fine until the intruder


def test_tenant_chains_are_independent(store: Store, raw: Engine) -> None:
    a = [_append(store, i, tenant_id="A") for i in range(3)]
    b = [_append(store, i, tenant_id="B") for i in range(3)]
    assert a[0].prev_hash == b[0].prev_hash == GENESIS_HASH
    assert b[1].prev_hash == b[0].hash
    assert a[2].prev_hash == a[1].hash
    assert a[0].hash != b[0].hash  # the tenant is part of the hashed fields
    assert [r.id for r in store.list_audit(tenant_id="A")] == [r.id for r in a]
    assert store.list_audit() == []  # the default tenant has no records
    with raw.begin() as conn:
        conn.execute(text("UPDATE audit_log SET reason = 'x' WHERE id = :id"), {"id": a[1].id})
    assert store.verify_audit("A").first_bad_id == a[1].id
    assert store.verify_audit("B").ok
    assert store.verify_audit("B").checked == 3
    # Appending to a broken chain still links to its head (the damage stays visible).
    assert _append(store, 9, tenant_id="B").prev_hash == b[-1].hash


def test_idempotency_key(store: Store) -> None:
    first = _append(store, 1, key="wf-1/act-7")
    again = _append(store, 2, key="wf-1/act-7", effect="deny")
    assert again == first
    assert first.key == "wf-1/act-7"
    other = _append(store, 3, key="wf-1/act-8")
    unkeyed = [_append(store, 4), _append(store, 5)]
    assert other.prev_hash == first.hash
    assert unkeyed[0].prev_hash == other.hash
    assert len(store.list_audit()) == 4
    # Keys are per tenant: another tenant's record with the same key is its own.
    elsewhere = _append(store, 6, key="wf-1/act-7", tenant_id="B")
    assert elsewhere.id != first.id
    assert elsewhere.prev_hash == GENESIS_HASH
    assert store.verify_audit().ok
    assert store.verify_audit("B").ok


def test_concurrent_appends_with_the_same_key(store: Store) -> None:
    results: list[AuditRecord] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            results.append(_append(store, worker, key="retried"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r.id for r in results}) == 1
    assert len(store.list_audit()) == 1


def test_concurrent_appends_keep_one_chain(store: Store) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                _append(store, worker * 100 + i, tenant_id="A" if i % 3 else "B")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    records = store.list_audit(tenant_id="A") + store.list_audit(tenant_id="B")
    assert len(records) == 80
    for tenant, count in (("A", 48), ("B", 32)):
        result = store.verify_audit(tenant)
        assert (result.ok, result.checked) == (True, count), result.problem


def _append_from_process(url: str, worker: int) -> None:
    with Store.open(url) as store:
        for i in range(10):
            _append(store, worker * 100 + i)


def test_concurrent_appends_from_processes(store: Store, store_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_from_process, args=(store_url, w)) for w in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    result = store.verify_audit()
    assert (result.ok, result.checked) == (True, 30), result.problem


def test_a_fork_is_refused_by_the_database(store: Store, raw: Engine) -> None:
    """Even a writer that bypasses the lock cannot give a record two successors."""
    first = _append(store, 0)
    _append(store, 1)
    with pytest.raises(Exception, match=r"(?i)unique"), raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_log (tenant_id, actor, action_kind, arguments_digest, effect,"
                " reason, created_at, prev_hash, hash) VALUES ('default', 'x', 'x', :d, 'allow',"
                " 'x', :ts, :prev, :h)"
            ),
            {"d": DIGEST, "ts": first.created_at, "prev": first.hash, "h": "f" * 64},
        )


def test_upgrade_from_0001_keeps_data(store_url: str) -> None:
    """A database created at revision 0001 (before the audit log) upgrades in place."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    engine = create_engine(store_url, poolclass=NullPool)
    if store_url.startswith("sqlite"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            assert MigrationContext.configure(conn).get_current_revision() == "0001"
            assert "audit_log" not in inspect(conn).get_table_names()
            conn.execute(
                text(
                    "INSERT INTO projects (id, tenant_id, goal, status, usage_input_tokens,"
                    " usage_output_tokens, created_at, updated_at)"
                    " VALUES ('old', 'default', 'kept', 'pending', 0, 0, :ts, :ts)"
                ),
                {"ts": "2025-01-01 00:00:00"},
            )
        with Store.open(store_url) as store:
            assert store.get_project("old").goal == "kept"
            record = _append(store, 0, project_id="old")
            assert record.prev_hash == GENESIS_HASH
            assert store.verify_audit().ok
        with engine.connect() as conn:
            head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
            assert MigrationContext.configure(conn).get_current_revision() == head
        # And back down: the audit table goes, the rest stays.
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
            assert "audit_log" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT goal FROM projects")).scalar_one() == "kept"
    finally:
        engine.dispose()
