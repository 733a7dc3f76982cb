from __future__ import annotations

import threading

import pytest

from soma.errors import NotFound
from soma.store import Store


def test_upsert_creates_then_updates(store: Store) -> None:
    store.create_project("p1", "goal")
    created = store.upsert_node("p1", "a", capsule="code.write@1", persona="engineer")
    assert (created.status, created.attempts, created.steps) == ("pending", 0, 0)
    assert created.started_at is None
    assert created.tenant_id == "default"

    running = store.upsert_node("p1", "a", status="running", attempts=1)
    assert running.capsule == "code.write@1"  # untouched fields are kept
    assert running.started_at is not None
    assert running.finished_at is None

    output = {"files": ["a.py"], "summary": "done", "score": 0.5, "ok": True, "none": None}
    done = store.upsert_node(
        "p1",
        "a",
        status="succeeded",
        steps=7,
        input_tokens=100,
        output_tokens=20,
        output=output,
        commit_sha="abc123",
        last_event="7 steps",
    )
    assert done.output == output
    assert done.started_at == running.started_at
    assert done.finished_at is not None
    assert store.get_node("p1", "a") == done

    retried = store.upsert_node("p1", "a", status="running", attempts=2, error=None)
    assert retried.started_at == running.started_at  # the first start is kept
    assert retried.finished_at is None


def test_list_nodes_in_insertion_order(store: Store) -> None:
    store.create_project("p1", "goal")
    for node_id in ["plan", "build", "alpha", "test"]:
        store.upsert_node("p1", node_id)
    store.upsert_node("p1", "build", status="ready")
    assert [n.node_id for n in store.list_nodes("p1")] == ["plan", "build", "alpha", "test"]


def test_nodes_belong_to_their_project(store: Store) -> None:
    store.create_project("p1", "goal")
    store.create_project("p2", "goal")
    store.upsert_node("p1", "a")
    assert store.list_nodes("p2") == []
    with pytest.raises(NotFound):
        store.get_node("p2", "a")
    with pytest.raises(NotFound):
        store.upsert_node("missing", "a")


def test_nodes_tenant_scoping(store: Store) -> None:
    store.create_project("p1", "goal", tenant_id="A")
    node = store.upsert_node("p1", "a", tenant_id="A")
    assert node.tenant_id == "A"
    with pytest.raises(NotFound):
        store.upsert_node("p1", "a", status="running")
    with pytest.raises(NotFound):
        store.list_nodes("p1", tenant_id="B")
    assert store.get_node("p1", "a", tenant_id="A").status == "pending"


def test_concurrent_upserts_of_one_node(store: Store) -> None:
    store.create_project("p1", "goal")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            store.upsert_node("p1", "a", steps=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list_nodes("p1")) == 1
