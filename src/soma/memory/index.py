"""Where memory vectors live: one small protocol, two implementations (the store's own table
by default, Qdrant at scale)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from soma.memory.types import MemoryHit, MemoryItem, MemoryKind

Vector = NDArray[np.float32]


class VectorIndex(Protocol):
    """Items with unit-length vectors, searched by cosine similarity within one tenant."""

    def add(self, item: MemoryItem, vector: Vector) -> bool:
        """Store the item; False when an item with its id is already there (idempotent)."""
        ...

    def search(
        self,
        tenant_id: str,
        vector: Vector,
        *,
        scopes: Sequence[str],
        kinds: Sequence[MemoryKind] | None = None,
        limit: int = 5,
    ) -> list[MemoryHit]: ...

    def delete(self, tenant_id: str, *, scope: str | None = None) -> int:
        """Forget the tenant's items (of one scope, if given); how many were removed."""
        ...

    def count(self, tenant_id: str) -> int: ...
