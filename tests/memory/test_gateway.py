"""The memory gateway: constitution on every write (no credentials are kept), audit, masking of
the tenant's secrets, idempotent keys, scopes."""

from __future__ import annotations

import pytest

from soma.memory.gateway import MemoryDenied
from soma.memory.index import VectorIndex
from soma.memory.types import TENANT_SCOPE, capsule_scope, project_scope
from soma.store import Store
from tests.memory.conftest import make_memory


def test_a_credential_is_never_remembered(index: VectorIndex, store: Store) -> None:
    memory = make_memory(index, store)
    with pytest.raises(MemoryDenied, match="deny-secrets-in-memory"):
        memory.remember("acme", "the deploy key is AKIAABCDEFGHIJKLMNOP", key="k1")
    with pytest.raises(MemoryDenied):
        memory.remember("acme", "db password: hunter2hunter2", key="k2")
    assert index.count("acme") == 0
    (decision, second) = store.list_audit(None, "acme")
    assert (decision.action_kind, decision.effect) == ("memory_write", "deny")
    assert decision.rule_id == "deny-secrets-in-memory"
    assert second.effect == "deny"
    assert store.verify_audit("acme").ok


def test_the_tenants_secret_values_are_masked_first(index: VectorIndex, store: Store) -> None:
    memory = make_memory(index, store, secrets={"acme": ["s3cr3t-value-9"]})
    item = memory.remember("acme", "the staging box answers to s3cr3t-value-9", key="k")
    assert "s3cr3t-value-9" not in item.text
    assert "[secret]" in item.text


def test_writes_are_idempotent_and_scoped(index: VectorIndex, store: Store) -> None:
    memory = make_memory(index, store)
    first = memory.remember("acme", "use uv for installs", key="same", scope=project_scope("p1"))
    again = memory.remember("acme", "use uv for installs", key="same", scope=project_scope("p1"))
    assert first.id == again.id
    assert index.count("acme") == 1
    memory.remember("acme", "prefer small commits", key="other", scope=capsule_scope("fix@1"))
    in_project = memory.search("acme", "installing packages", scopes=[project_scope("p1")])
    assert [h.item.text for h in in_project] == ["use uv for installs"]
    assert memory.search("acme", "installing packages", scopes=[TENANT_SCOPE]) == []
    assert memory.forget("acme", scope=project_scope("p1")) == 1
    assert index.count("acme") == 1


def test_empty_text_is_refused(index: VectorIndex, store: Store) -> None:
    with pytest.raises(Exception, match="needs text"):
        make_memory(index, store).remember("acme", "   ", key="k")
