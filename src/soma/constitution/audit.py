"""Recording policy decisions in the store's tamper-evident audit log.

The policy engine calls :func:`record_decision` once per decision about an agent action (and
the review gate once per human verdict). Only a digest of the action's arguments or text is kept,
never the content itself, so the log cannot leak what redaction removed; pass the *redacted*
value so the digest can be reproduced from what the rest of the system stores.
"""

from __future__ import annotations

from typing import Any

from soma.store import DEFAULT_TENANT, AuditRecord, Store
from soma.store.audit import digest

__all__ = ["digest", "record_decision"]


def record_decision(
    store: Store,
    *,
    tenant_id: str = DEFAULT_TENANT,
    project_id: str | None = None,
    node_id: str | None = None,
    actor: str,
    action_kind: str,
    tool: str | None = None,
    arguments: Any = None,
    arguments_digest: str | None = None,
    rule_id: str | None = None,
    effect: str,
    reason: str = "",
    key: str | None = None,
) -> AuditRecord:
    """Append one decision to the audit log and return the record.

    Subject: ``tenant_id``, ``project_id``, ``node_id`` and ``actor`` (e.g.
    ``"developer (implement-feature)"``). Action: ``action_kind`` (``tool_call``,
    ``model_output``, ``message``, ``review``...), ``tool`` and either the redacted ``arguments``
    (digested here) or their precomputed ``arguments_digest``. Decision: ``effect`` (``allow``,
    ``deny``, ``require_approval``, ``redact``, ``approved``, ``rejected``...), the deciding
    ``rule_id`` and a human-readable ``reason``. ``key`` makes the call idempotent: a retried
    activity passing the same key gets the first record back.
    """
    if arguments_digest is None:
        arguments_digest = digest(arguments)
    elif arguments is not None:
        raise ValueError("pass either arguments or arguments_digest, not both")
    return store.append_audit(
        tenant_id=tenant_id,
        project_id=project_id,
        node_id=node_id,
        actor=actor,
        action_kind=action_kind,
        tool=tool,
        arguments_digest=arguments_digest,
        rule_id=rule_id,
        effect=effect,
        reason=reason,
        key=key,
    )
