from __future__ import annotations

import threading

import pytest

from soma.errors import NotFound
from soma.store import Store


def test_events_in_order_with_paging(store: Store) -> None:
    store.create_project("p1", "goal")
    store.create_project("p2", "goal")
    ids = []
    for i in range(10):
        ids.append(store.add_event("p1", "log", f"event {i}", node_id="a" if i % 2 else None))
        store.add_event("p2", "log", f"other {i}")
    assert ids == sorted(ids)

    events = store.list_events("p1")
    assert [e.message for e in events] == [f"event {i}" for i in range(10)]
    assert [e.id for e in events] == ids
    assert events[1].node_id == "a"
    assert events[0].node_id is None
    assert events[0].data is None

    page1 = store.list_events("p1", limit=4)
    page2 = store.list_events("p1", after_id=page1[-1].id, limit=4)
    page3 = store.list_events("p1", after_id=page2[-1].id, limit=4)
    assert [e.id for e in page1 + page2 + page3] == ids
    assert len(page3) == 2
    assert store.list_events("p1", after_id=ids[-1]) == []


def test_event_data_round_trips(store: Store) -> None:
    store.create_project("p1", "goal")
    data = {"nested": {"list": [1, 2.25, "três", None, False]}, "big": 2**53, "empty": {}}
    event_id = store.add_event("p1", "node_succeeded", "ok", data=data)
    [event] = store.list_events("p1")
    assert event.id == event_id
    assert event.data == data
    assert event.kind == "node_succeeded"
    assert event.created_at.tzinfo is not None


def test_events_tenant_scoping(store: Store) -> None:
    store.create_project("p1", "goal", tenant_id="A")
    store.add_event("p1", "log", "hello", tenant_id="A")
    with pytest.raises(NotFound):
        store.add_event("p1", "log", "intruder", tenant_id="B")
    with pytest.raises(NotFound):
        store.list_events("p1")
    [event] = store.list_events("p1", tenant_id="A")
    assert event.tenant_id == "A"


def test_concurrent_appends_keep_per_project_order(store: Store) -> None:
    store.create_project("p1", "goal")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(10):
                store.add_event("p1", "log", f"{worker}:{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = store.list_events("p1")
    assert len(events) == 60
    assert [e.id for e in events] == sorted(e.id for e in events)
    for worker in range(6):  # each writer's own events stay in its order
        mine = [e.message for e in events if e.message.startswith(f"{worker}:")]
        assert mine == [f"{worker}:{i}" for i in range(10)]
