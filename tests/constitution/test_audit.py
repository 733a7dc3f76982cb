from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from soma.constitution.audit import digest, record_decision
from soma.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as opened:
        yield opened


def test_digest_is_canonical_json_sha256() -> None:
    expected = hashlib.sha256(b'{"a":1,"b":[true,null,"\xc3\xa9"]}').hexdigest()
    assert digest({"b": [True, None, "é"], "a": 1}) == expected
    assert digest({"a": 1, "b": [True, None, "é"]}) == expected  # key order does not matter
    assert digest("rm -rf /") == hashlib.sha256(b'"rm -rf /"').hexdigest()
    assert digest(None) == hashlib.sha256(b"null").hexdigest()
    assert digest({"a": 1}) != digest({"a": "1"})


def test_digest_accepts_models_and_rich_values() -> None:
    class Args(BaseModel):
        path: str
        mode: int

    @dataclass
    class Call:
        path: str
        mode: int

    assert digest(Args(path="x", mode=1)) == digest({"mode": 1, "path": "x"})
    assert digest(Call(path="x", mode=1)) == digest({"mode": 1, "path": "x"})
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert digest({"at": when, "p": Path("a/b")}) == digest(
        {"at": "2025-01-02T03:04:05Z", "p": "a/b"}
    )


def test_record_decision_digests_the_arguments(store: Store) -> None:
    record = record_decision(
        store,
        project_id="p1",
        node_id="implement",
        actor="developer (implement-feature)",
        action_kind="tool_call",
        tool="fs.write",
        arguments={"path": "README.md", "content": "[REDACTED]"},
        rule_id="no-secrets",
        effect="redact",
        reason="content matched a secret pattern",
        key="wf/act-1",
    )
    assert record.arguments_digest == digest({"content": "[REDACTED]", "path": "README.md"})
    assert (record.actor, record.effect, record.rule_id) == (
        "developer (implement-feature)",
        "redact",
        "no-secrets",
    )
    assert record.key == "wf/act-1"
    assert store.list_audit(project_id="p1") == [record]


def test_record_decision_defaults_and_precomputed_digest(store: Store) -> None:
    review = record_decision(
        store,
        tenant_id="acme",
        actor="alice",
        action_kind="review",
        arguments_digest="a" * 64,
        effect="approved",
    )
    assert review.arguments_digest == "a" * 64
    assert (review.project_id, review.node_id, review.tool, review.rule_id) == (
        None,
        None,
        None,
        None,
    )
    assert review.reason == ""
    assert review.tenant_id == "acme"
    nothing = record_decision(
        store, tenant_id="acme", actor="x", action_kind="message", effect="allow"
    )
    assert nothing.arguments_digest == digest(None)
    assert nothing.prev_hash == review.hash
    assert store.verify_audit("acme").ok


def test_record_decision_is_idempotent_by_key(store: Store) -> None:
    first = record_decision(store, actor="a", action_kind="tool_call", effect="deny", key="k")
    again = record_decision(store, actor="a", action_kind="tool_call", effect="deny", key="k")
    assert again == first
    assert len(store.list_audit()) == 1


def test_record_decision_refuses_both_arguments_and_digest(store: Store) -> None:
    with pytest.raises(ValueError, match="not both"):
        record_decision(
            store,
            actor="a",
            action_kind="tool_call",
            effect="allow",
            arguments={"x": 1},
            arguments_digest=digest({"x": 1}),
        )
    assert store.list_audit() == []
