"""Memory over a real store (SQLite) or Qdrant's in-process mode, with the packaged embedding
model and the built-in constitution."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from soma.constitution import Constitution
from soma.memory.embed import memory_embedder
from soma.memory.gateway import Memory
from soma.memory.index import VectorIndex
from soma.memory.qdrant_index import QdrantIndex
from soma.memory.sql_index import SqlIndex
from soma.specs.library import Library
from soma.store import Store

CONSTITUTION = Constitution.compile(Library.builtin().constitution("default"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'soma.db'}") as opened:
        yield opened


@pytest.fixture(params=["sql", "qdrant"])
def index(request: pytest.FixtureRequest, store: Store) -> VectorIndex:
    if request.param == "sql":
        return SqlIndex(store)
    return QdrantIndex(QdrantClient(":memory:"))


def make_memory(
    index: VectorIndex, store: Store, secrets: dict[str, list[str]] | None = None
) -> Memory:
    return Memory(
        index,
        memory_embedder(),
        store=store,
        constitution_for=lambda tenant: CONSTITUTION,
        secret_values=lambda tenant: (secrets or {}).get(tenant, []),
    )


@pytest.fixture
def memory(index: VectorIndex, store: Store) -> Memory:
    return make_memory(index, store)
