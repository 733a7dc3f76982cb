"""Building the memory gateway a process uses, from settings."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from soma.marketplace.embeddings import Embedder, Vectors
from soma.memory.embed import DIMENSIONS, memory_embedder
from soma.memory.gateway import ConstitutionFor, Memory, SecretValues
from soma.memory.index import VectorIndex
from soma.memory.sql_index import SqlIndex
from soma.settings import Settings
from soma.store import Store


class LazyEmbedder:
    """Loads the embedding model on first use, so processes that never touch memory (the CLI,
    a gateway without workers) do not pay for it."""

    name = "memory embedder (loaded on first use)"
    dim = DIMENSIONS

    def __init__(self) -> None:
        self._loaded: Embedder | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self._model().embed(texts)

    def _model(self) -> Embedder:
        with self._lock:
            if self._loaded is None:
                self._loaded = memory_embedder()
            return self._loaded


def memory_index(store: Store, settings: Settings) -> VectorIndex:
    """A Qdrant server when ``SOMA_QDRANT_URL`` is set, else the store's own table."""
    if settings.qdrant_url:
        from soma.memory.qdrant_index import QdrantIndex

        key = settings.qdrant_api_key
        return QdrantIndex.connect(settings.qdrant_url, key.get_secret_value() if key else None)
    return SqlIndex(store)


def build_memory(
    store: Store,
    settings: Settings,
    *,
    constitution_for: ConstitutionFor,
    secret_values: SecretValues | None = None,
    embedder: Embedder | None = None,
) -> Memory:
    return Memory(
        memory_index(store, settings),
        embedder or LazyEmbedder(),
        store=store,
        constitution_for=constitution_for,
        secret_values=secret_values,
    )
