"""The audit log: a tamper-evident, per-tenant hash chain of policy decisions.

Every record carries ``prev_hash`` (the previous record's ``hash`` in the same tenant, or
:data:`GENESIS_HASH` for the first) and ``hash = sha256(prev_hash + canonical JSON of its
fields)``. Editing, deleting, inserting or reordering records breaks a link that
:meth:`AuditMixin.verify_audit` reports by id. (Rewriting the whole chain from some point on, or
cutting off its newest records, is only detectable against a copy of the head hash kept
elsewhere: that is the limit of any unkeyed hash chain.)

Appends are serialized per tenant so that concurrent writers (threads, worker processes, several
hosts on PostgreSQL) can never fork a chain: on SQLite every write transaction already holds the
database write lock (BEGIN IMMEDIATE); on PostgreSQL the append takes a transaction-scoped
advisory lock on the tenant. A unique ``(tenant_id, prev_hash)`` constraint backs both up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from soma.store.records import DEFAULT_TENANT, AuditRecord, AuditVerification
from soma.store.tables import AuditEntry, utcnow

GENESIS_HASH = "0" * 64
# Namespace of the per-tenant advisory locks (the two-int4-key space, which PostgreSQL keeps
# apart from the single-bigint key the migration lock uses). Any fixed int4 would do.
_PG_AUDIT_LOCK_CLASS = 0x41756469  # "Audi"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_VERIFY_BATCH = 1000


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no whitespace, UTF-8 text kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (sorted keys, no whitespace).

    Anything pydantic can serialize is accepted (models, dataclasses, datetimes, paths...); a
    string is hashed as a JSON string, so ``digest("x")`` is the hash of ``"x"`` with quotes.
    """
    return hashlib.sha256(canonical_json(to_jsonable_python(value)).encode("utf-8")).hexdigest()


def _timestamp(value: datetime) -> str:
    """A fixed-width ISO 8601 UTC timestamp (microseconds always present)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def audit_hash(prev_hash: str, record: AuditEntry | AuditRecord) -> str:
    """The chain hash of ``record``: sha256 hex of ``prev_hash`` + canonical JSON of its fields.

    The hashed fields are everything but ``id``, ``prev_hash`` and ``hash`` itself (the record's
    position is bound through ``prev_hash`` instead, so ids may come from any sequence).
    """
    key = record.idempotency_key if isinstance(record, AuditEntry) else record.key
    payload = {
        "tenant_id": record.tenant_id,
        "project_id": record.project_id,
        "node_id": record.node_id,
        "actor": record.actor,
        "action_kind": record.action_kind,
        "tool": record.tool,
        "arguments_digest": record.arguments_digest,
        "rule_id": record.rule_id,
        "effect": record.effect,
        "reason": record.reason,
        "key": key,
        "created_at": _timestamp(record.created_at),
    }
    return hashlib.sha256((prev_hash + canonical_json(payload)).encode("utf-8")).hexdigest()


class AuditMixin:
    """The audit-log methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def append_audit(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT,
        project_id: str | None,
        node_id: str | None,
        actor: str,
        action_kind: str,
        tool: str | None,
        arguments_digest: str,
        rule_id: str | None,
        effect: str,
        reason: str,
        key: str | None = None,
    ) -> AuditRecord:
        """Append one decision to the tenant's chain and return it.

        ``arguments_digest`` is the sha256 hex of the (already redacted) arguments or text (see
        :func:`soma.constitution.audit.digest`); the log never holds the arguments themselves.
        With an idempotency ``key`` (unique per tenant), appending again under the same key
        returns the record already there instead of adding a second one, so a retried activity
        records its decision once.
        """
        if not _SHA256_HEX.fullmatch(arguments_digest):
            raise ValueError(
                f"arguments_digest must be 64 lowercase hex digits: {arguments_digest!r}"
            )
        with self._write() as session:
            _lock_chain(session, tenant_id)
            if key is not None:
                existing = session.scalar(
                    select(AuditEntry).where(
                        AuditEntry.tenant_id == tenant_id, AuditEntry.idempotency_key == key
                    )
                )
                if existing is not None:
                    return AuditRecord.model_validate(existing)
            head = session.scalar(
                select(AuditEntry.hash)
                .where(AuditEntry.tenant_id == tenant_id)
                .order_by(AuditEntry.id.desc())
                .limit(1)
            )
            prev_hash = head or GENESIS_HASH
            row = AuditEntry(
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
                idempotency_key=key,
                created_at=utcnow(),
                prev_hash=prev_hash,
            )
            row.hash = audit_hash(prev_hash, row)
            session.add(row)
            session.flush()
            return AuditRecord.model_validate(row)

    def list_audit(
        self,
        project_id: str | None = None,
        tenant_id: str = DEFAULT_TENANT,
        limit: int = 1000,
        after_id: int = 0,
        *,
        node_id: str | None = None,
        effect: str | None = None,
        tool: str | None = None,
    ) -> list[AuditRecord]:
        """The tenant's audit records with ``id > after_id`` (narrowed by whichever of project,
        node, effect and tool are given), oldest first; pass the last id seen to page."""
        query = select(AuditEntry).where(
            AuditEntry.tenant_id == tenant_id, AuditEntry.id > after_id
        )
        for column, wanted in (
            (AuditEntry.project_id, project_id),
            (AuditEntry.node_id, node_id),
            (AuditEntry.effect, effect),
            (AuditEntry.tool, tool),
        ):
            if wanted is not None:
                query = query.where(column == wanted)
        query = query.order_by(AuditEntry.id).limit(limit)
        with self._read() as session:
            return [AuditRecord.model_validate(r) for r in session.scalars(query)]

    def verify_audit(self, tenant_id: str = DEFAULT_TENANT) -> AuditVerification:
        """Recompute the tenant's chain in id order and report the first record that is off.

        A record is bad when its ``prev_hash`` is not the hash of the record before it (one was
        deleted, inserted or moved) or its ``hash`` does not match its fields (it was edited).
        """
        expected_prev = GENESIS_HASH
        previous_id: int | None = None
        checked = 0
        with self._read() as session:
            for row in _chain(session, tenant_id):
                checked += 1
                if row.prev_hash != expected_prev:
                    after = f"record {previous_id}" if previous_id is not None else "the start"
                    return AuditVerification(
                        ok=False,
                        checked=checked,
                        first_bad_id=row.id,
                        problem=(
                            f"record {row.id} does not link to {after} of the chain: a record"
                            " was deleted, inserted or moved there"
                        ),
                        head_hash=None if previous_id is None else expected_prev,
                    )
                if audit_hash(row.prev_hash, row) != row.hash:
                    return AuditVerification(
                        ok=False,
                        checked=checked,
                        first_bad_id=row.id,
                        problem=f"record {row.id} was modified: its hash does not match its fields",
                        head_hash=None if previous_id is None else expected_prev,
                    )
                expected_prev = row.hash
                previous_id = row.id
        return AuditVerification(
            ok=True, checked=checked, head_hash=None if previous_id is None else expected_prev
        )


def _lock_chain(session: Session, tenant_id: str) -> None:
    """Serialize appends to this tenant's chain until the transaction ends.

    SQLite: nothing to do, the write transaction began with BEGIN IMMEDIATE and so already holds
    the database's only write lock. PostgreSQL: an advisory lock on the tenant (a hash collision
    between two tenants merely makes them take turns).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(:tenant))"),
            {"cls": _PG_AUDIT_LOCK_CLASS, "tenant": tenant_id},
        )


def _chain(session: Session, tenant_id: str) -> Iterator[AuditEntry]:
    """The tenant's records in id order, fetched in batches."""
    after = None
    while True:
        query = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
        if after is not None:
            query = query.where(AuditEntry.id > after)
        batch = list(session.scalars(query.order_by(AuditEntry.id).limit(_VERIFY_BATCH)))
        yield from batch
        if len(batch) < _VERIFY_BATCH:
            return
        after = batch[-1].id
        session.expunge_all()
