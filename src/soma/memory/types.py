"""Memory items, scopes and search hits."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MemoryKind = Literal["note", "fact", "lesson"]
TENANT_SCOPE = "tenant"


def project_scope(project_id: str) -> str:
    return f"project:{project_id}"


def capsule_scope(capsule: str) -> str:
    """Lessons of a capsule hold across its versions: the name, not ``name@version``."""
    return f"capsule:{capsule.split('@')[0]}"


def persona_scope(persona: str) -> str:
    return f"persona:{persona.split('@')[0]}"


def item_id(tenant_id: str, key: str) -> str:
    """Ids come from the writer's idempotency key, so a retried write lands on the same item."""
    return hashlib.sha256(f"{tenant_id}\x00{key}".encode()).hexdigest()[:32]


class MemoryItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    scope: str = Field(description="tenant, project:<id>, capsule:<name> or persona:<name>")
    kind: MemoryKind
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class MemoryHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    item: MemoryItem
    score: float = Field(description="Cosine similarity to the query, -1 to 1.")
