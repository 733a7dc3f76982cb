"""A tiny time-bounded cache for credential lookups, safe against revocation races.

The danger in caching "this key is valid" is a lookup that read the database just before a
revocation and stores its result just after it, resurrecting the key until the entry expires.
Every invalidation therefore bumps a generation counter, and :meth:`TTLCache.put` drops a value
read under an older generation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most ``max_entries`` values, each served for ``ttl_s`` seconds after it was read."""

    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Read this *before* the lookup whose result will be :meth:`put`."""
        return self._generation

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if self._clock() >= deadline:
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: K, value: V, generation: int) -> None:
        """Keep ``value`` unless anything was invalidated since ``generation`` was read."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self._max:
                self._entries.clear()  # crude, but bounded, and a miss only costs one query
            self._entries[key] = (self._clock() + self.ttl_s, value)

    def invalidate(self, key: K) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
