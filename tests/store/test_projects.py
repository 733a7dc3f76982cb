from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from soma.errors import NotFound
from soma.store import Conflict, Store


def test_create_and_get(store: Store) -> None:
    created = store.create_project(
        "p1", "build a thing", planner="template", workflow_id="wf-1", workspace_path="/w/p1"
    )
    assert created.id == "p1"
    assert created.tenant_id == "default"
    assert created.status == "pending"
    assert created.usage_input_tokens == created.usage_output_tokens == 0
    assert created.finished_at is None
    assert created.created_at.tzinfo is not None
    assert created.created_at.utcoffset() == timedelta(0)
    assert store.get_project("p1") == created


def test_duplicate_id_is_conflict_even_across_tenants(store: Store) -> None:
    store.create_project("p1", "goal")
    with pytest.raises(Conflict):
        store.create_project("p1", "again")
    with pytest.raises(Conflict):
        store.create_project("p1", "again", tenant_id="other")


def test_missing_project_not_found_with_hint(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.get_project("nope")
    assert "nope" in info.value.message
    assert info.value.hint


def test_list_newest_first_with_limit_and_status(store: Store) -> None:
    for i in range(5):
        store.create_project(f"p{i}", f"goal {i}")
    store.update_project("p3", status="running")
    assert [p.id for p in store.list_projects()] == ["p4", "p3", "p2", "p1", "p0"]
    assert [p.id for p in store.list_projects(limit=2)] == ["p4", "p3"]
    assert [p.id for p in store.list_projects(status="running")] == ["p3"]


def test_update_sets_fields_and_stamps(store: Store) -> None:
    before = store.create_project("p1", "goal")
    plan = {"goal": "goal", "nodes": [{"id": "a", "capsule": "x@1", "needs": []}]}
    updated = store.update_project("p1", status="running", planner="model", plan=plan)
    assert updated.status == "running"
    assert updated.plan == plan
    assert updated.updated_at >= before.updated_at
    assert updated.finished_at is None

    done = store.update_project("p1", status="failed", error="boom")
    assert done.finished_at is not None
    assert done.error == "boom"
    # A terminal status keeps the first finish time; leaving it clears the stamp.
    assert store.update_project("p1", status="cancelled").finished_at == done.finished_at
    assert store.update_project("p1", status="running").finished_at is None
    assert store.get_project("p1").status == "running"


def test_update_accepts_explicit_and_iso_string_datetimes(store: Store) -> None:
    store.create_project("p1", "goal")
    when = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert store.update_project("p1", status="succeeded", finished_at=when).finished_at == when
    # Workflows send fields through Temporal as JSON, where datetimes become strings.
    fields: dict[str, object] = {"finished_at": "2031-01-01T00:00:00+02:00"}
    got = store.update_project("p1", **fields)  # type: ignore[arg-type]
    assert got.finished_at == datetime(2030, 12, 31, 22, tzinfo=UTC)


def test_update_rejects_unknown_fields_and_bad_values(store: Store) -> None:
    store.create_project("p1", "goal")
    with pytest.raises(ValidationError):
        store.update_project("p1", nonsense=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        store.update_project("p1", status="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        store.create_project("p2", "goal", status="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timezone"):
        store.update_project("p1", finished_at=datetime(2030, 1, 1))
    assert store.get_project("p1").status == "pending"


def test_update_missing_project(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_project("nope", status="running")


def test_tenant_scoping(store: Store) -> None:
    store.create_project("a1", "goal of A", tenant_id="A")
    store.create_project("b1", "goal of B", tenant_id="B")
    assert store.get_project("a1", tenant_id="A").tenant_id == "A"
    assert [p.id for p in store.list_projects(tenant_id="A")] == ["a1"]
    assert store.list_projects() == []
    with pytest.raises(NotFound):
        store.get_project("a1", tenant_id="B")
    with pytest.raises(NotFound):
        store.get_project("a1")
    with pytest.raises(NotFound):
        store.update_project("a1", tenant_id="B", status="running")
    with pytest.raises(NotFound):
        store.add_usage("a1", 1, 1, tenant_id="B")
    assert store.get_project("a1", tenant_id="A").status == "pending"


def test_add_usage_is_atomic_under_concurrency(store: Store) -> None:
    store.create_project("p1", "goal")

    def work() -> None:
        for _ in range(10):
            store.add_usage("p1", 3, 5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    project = store.get_project("p1")
    assert (project.usage_input_tokens, project.usage_output_tokens) == (240, 400)
