"""Memory items with their embedding vectors, for the embedded memory index.

Vectors are float32 bytes: the index loads a tenant's candidates and ranks them with numpy,
which is exact and fast enough for the embedded default (tens of thousands of items per
tenant); at larger scale the memory gateway is pointed at a Qdrant server instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from soma.store.tables import MemoryRow


class StoredMemory(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    tenant_id: str
    scope: str
    kind: str
    text: str
    meta: dict[str, Any]
    vector: bytes
    created_at: datetime


class MemoryMixin:
    """The memory methods of :class:`soma.store.Store`."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def add_memory(
        self,
        *,
        id: str,
        tenant_id: str,
        scope: str,
        kind: str,
        text: str,
        meta: dict[str, Any],
        vector: bytes,
        created_at: datetime,
    ) -> bool:
        """Insert the item unless its id exists; True if inserted."""
        values = {
            "id": id,
            "tenant_id": tenant_id,
            "scope": scope,
            "kind": kind,
            "text": text,
            "meta": meta,
            "vector": vector,
            "created_at": created_at,
        }
        with self._write() as session:
            dialect_insert = (
                pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            )
            statement = (
                dialect_insert(MemoryRow)
                .values(values)
                .on_conflict_do_nothing()
                .returning(MemoryRow.id)
            )
            return session.execute(statement).scalar_one_or_none() is not None

    def memory_candidates(
        self, tenant_id: str, scopes: Sequence[str], kinds: Sequence[str] | None = None
    ) -> list[StoredMemory]:
        query = select(MemoryRow).where(
            MemoryRow.tenant_id == tenant_id, MemoryRow.scope.in_(list(scopes))
        )
        if kinds:
            query = query.where(MemoryRow.kind.in_(list(kinds)))
        with self._read() as session:
            return [StoredMemory.model_validate(row) for row in session.scalars(query)]

    def delete_memory(self, tenant_id: str, scope: str | None = None) -> int:
        statement = delete(MemoryRow).where(MemoryRow.tenant_id == tenant_id)
        if scope is not None:
            statement = statement.where(MemoryRow.scope == scope)
        with self._write() as session:
            result = session.execute(statement.execution_options(synchronize_session=False))
            return int(getattr(result, "rowcount", 0) or 0)

    def count_memory(self, tenant_id: str) -> int:
        query = select(func.count()).select_from(MemoryRow).where(MemoryRow.tenant_id == tenant_id)
        with self._read() as session:
            return int(session.scalar(query) or 0)
