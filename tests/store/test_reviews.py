from __future__ import annotations

import pytest

from soma.errors import NotFound
from soma.store import Conflict, Store


def test_open_is_idempotent(store: Store) -> None:
    store.create_project("p1", "goal")
    review = store.open_review("p1", "a", 1)
    assert (review.status, review.attempt, review.node_id) == ("pending", 1, "a")
    assert review.decided_at is None
    assert store.open_review("p1", "a", 1) == review
    assert store.open_review("p1", "a", 2).id != review.id


def test_decide_and_list(store: Store) -> None:
    store.create_project("p1", "goal")
    store.create_project("p2", "goal")
    store.open_review("p1", "a", 1)
    store.open_review("p1", "b", 1)
    store.open_review("p2", "a", 1)
    assert [(r.project_id, r.node_id) for r in store.list_reviews()] == [
        ("p1", "a"),
        ("p1", "b"),
        ("p2", "a"),
    ]
    assert len(store.list_reviews(project_id="p2")) == 1

    approved = store.decide_review("p1", "a", 1, approved=True, comment="lgtm", decided_by="ann")
    assert approved.status == "approved"
    assert (approved.comment, approved.decided_by) == ("lgtm", "ann")
    assert approved.decided_at is not None
    rejected = store.decide_review("p1", "b", 1, False, "wrong file", "bob")
    assert rejected.status == "rejected"

    assert [r.project_id for r in store.list_reviews()] == ["p2"]
    assert [r.node_id for r in store.list_reviews(status="approved")] == ["a"]
    assert len(store.list_reviews(status=None)) == 3


def test_decisions_are_final(store: Store) -> None:
    store.create_project("p1", "goal")
    store.open_review("p1", "a", 1)
    first = store.decide_review("p1", "a", 1, approved=True, decided_by="ann")
    # The same decision again (a retried request) returns the review unchanged...
    assert store.decide_review("p1", "a", 1, approved=True, decided_by="bob") == first
    # ...the opposite one is refused.
    with pytest.raises(Conflict):
        store.decide_review("p1", "a", 1, approved=False)
    assert store.open_review("p1", "a", 1) == first


def test_decide_unknown_review(store: Store) -> None:
    store.create_project("p1", "goal")
    with pytest.raises(NotFound):
        store.decide_review("p1", "a", 1, approved=True)


def test_reviews_tenant_scoping(store: Store) -> None:
    store.create_project("p1", "goal", tenant_id="A")
    store.open_review("p1", "a", 1, tenant_id="A")
    assert store.list_reviews() == []
    assert store.list_reviews(tenant_id="B") == []
    [review] = store.list_reviews(tenant_id="A")
    assert review.tenant_id == "A"
    with pytest.raises(NotFound):
        store.open_review("p1", "a", 2)
    with pytest.raises(NotFound):
        store.decide_review("p1", "a", 1, approved=True, tenant_id="B")
    assert store.decide_review("p1", "a", 1, True, tenant_id="A").status == "approved"
