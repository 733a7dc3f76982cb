"""Memory on Qdrant: the index for deployments whose memory outgrows the store's table.

The same code serves a Qdrant server (``SOMA_QDRANT_URL``) and Qdrant's in-process local mode
(``QdrantClient(":memory:")`` or a path), which is how the tests exercise it. One collection
holds every tenant; every query filters on the tenant, so tenants never see each other's items.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from soma.errors import SomaError
from soma.memory.embed import DIMENSIONS
from soma.memory.index import Vector
from soma.memory.types import MemoryHit, MemoryItem, MemoryKind

try:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError:  # pragma: no cover - depends on the install
    QdrantClient = None  # type: ignore[assignment,misc]

COLLECTION = "soma_memory"


def _point_id(item_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"soma-memory:{item_id}"))


class QdrantIndex:
    def __init__(self, client: QdrantClient, collection: str = COLLECTION) -> None:
        self.client = client
        self.collection = collection
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config=qm.VectorParams(size=DIMENSIONS, distance=qm.Distance.COSINE),
            )
            with warnings.catch_warnings():  # local mode says the indexes do nothing there
                warnings.simplefilter("ignore", UserWarning)
                for field in ("tenant_id", "scope", "kind"):
                    client.create_payload_index(collection, field, qm.PayloadSchemaType.KEYWORD)

    @classmethod
    def connect(cls, url: str, api_key: str | None = None) -> QdrantIndex:
        if QdrantClient is None:
            raise SomaError(
                "memory on Qdrant needs the qdrant-client package",
                hint="pip install 'soma-agent-hub[qdrant]', or unset SOMA_QDRANT_URL",
            )
        return cls(QdrantClient(url=url, api_key=api_key))

    def add(self, item: MemoryItem, vector: Vector) -> bool:
        point = _point_id(item.id)
        if self.client.retrieve(self.collection, [point], with_payload=False):
            return False
        payload: dict[str, Any] = {
            "id": item.id,
            "tenant_id": item.tenant_id,
            "scope": item.scope,
            "kind": item.kind,
            "text": item.text,
            "metadata": item.metadata,
            "created_at": item.created_at.isoformat(),
        }
        self.client.upsert(
            self.collection,
            [qm.PointStruct(id=point, vector=[float(x) for x in vector], payload=payload)],
            wait=True,
        )
        return True

    def search(
        self,
        tenant_id: str,
        vector: Vector,
        *,
        scopes: Sequence[str],
        kinds: Sequence[MemoryKind] | None = None,
        limit: int = 5,
    ) -> list[MemoryHit]:
        must: list[qm.Condition] = [
            qm.FieldCondition(key="tenant_id", match=qm.MatchValue(value=tenant_id)),
            qm.FieldCondition(key="scope", match=qm.MatchAny(any=list(scopes))),
        ]
        if kinds:
            must.append(qm.FieldCondition(key="kind", match=qm.MatchAny(any=list(kinds))))
        found = self.client.query_points(
            self.collection,
            query=[float(x) for x in vector],
            query_filter=qm.Filter(must=must),
            limit=limit,
            with_payload=True,
        )
        return [
            MemoryHit(item=_item(point.payload or {}), score=round(float(point.score), 6))
            for point in found.points
        ]

    def delete(self, tenant_id: str, *, scope: str | None = None) -> int:
        selector = self._filter(tenant_id, scope)
        removed = self.client.count(self.collection, count_filter=selector, exact=True).count
        self.client.delete(self.collection, points_selector=qm.FilterSelector(filter=selector))
        return removed

    def count(self, tenant_id: str) -> int:
        selector = self._filter(tenant_id, None)
        return self.client.count(self.collection, count_filter=selector, exact=True).count

    @staticmethod
    def _filter(tenant_id: str, scope: str | None) -> qm.Filter:
        must: list[qm.Condition] = [
            qm.FieldCondition(key="tenant_id", match=qm.MatchValue(value=tenant_id))
        ]
        if scope is not None:
            must.append(qm.FieldCondition(key="scope", match=qm.MatchValue(value=scope)))
        return qm.Filter(must=must)


def _item(payload: dict[str, Any]) -> MemoryItem:
    return MemoryItem(
        id=payload["id"],
        tenant_id=payload["tenant_id"],
        scope=payload["scope"],
        kind=payload["kind"],
        text=payload["text"],
        metadata=payload.get("metadata") or {},
        created_at=datetime.fromisoformat(payload["created_at"]),
    )
