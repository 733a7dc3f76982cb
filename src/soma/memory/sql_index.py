"""The embedded memory index: the store's ``memory_items`` table, ranked with numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soma.memory.index import Vector
from soma.memory.types import MemoryHit, MemoryItem, MemoryKind
from soma.store import Store
from soma.store.memory import StoredMemory


class SqlIndex:
    """Exact cosine search over the tenant's items in the given scopes (vectors are unit
    length, so a dot product is the cosine)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, item: MemoryItem, vector: Vector) -> bool:
        return self.store.add_memory(
            id=item.id,
            tenant_id=item.tenant_id,
            scope=item.scope,
            kind=item.kind,
            text=item.text,
            meta=item.metadata,
            vector=np.asarray(vector, dtype=np.float32).tobytes(),
            created_at=item.created_at,
        )

    def search(
        self,
        tenant_id: str,
        vector: Vector,
        *,
        scopes: Sequence[str],
        kinds: Sequence[MemoryKind] | None = None,
        limit: int = 5,
    ) -> list[MemoryHit]:
        rows = self.store.memory_candidates(tenant_id, scopes, kinds)
        if not rows:
            return []
        matrix = np.stack([np.frombuffer(row.vector, dtype=np.float32) for row in rows])
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        best = np.argsort(-scores, kind="stable")[:limit]
        return [MemoryHit(item=_item(rows[i]), score=round(float(scores[i]), 6)) for i in best]

    def delete(self, tenant_id: str, *, scope: str | None = None) -> int:
        return self.store.delete_memory(tenant_id, scope)

    def count(self, tenant_id: str) -> int:
        return self.store.count_memory(tenant_id)


def _item(row: StoredMemory) -> MemoryItem:
    return MemoryItem(
        id=row.id,
        tenant_id=row.tenant_id,
        scope=row.scope,
        kind=row.kind,
        text=row.text,
        metadata=row.meta,
        created_at=row.created_at,
    )
