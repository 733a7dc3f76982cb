"""The store: SomaAgentHub's own records of projects, plan nodes, events, reviews and
idempotent activity results, on SQLite (default, under SOMA_HOME) or PostgreSQL.

Open it with ``Store.open(settings.store_url)``; the schema is migrated to head on open.
"""

from soma.store.records import (
    DEFAULT_TENANT,
    EventRecord,
    NodeFields,
    NodeRecord,
    NodeStatus,
    Planner,
    ProjectFields,
    ProjectRecord,
    ProjectStatus,
    ReviewRecord,
    ReviewStatus,
)
from soma.store.store import Conflict, Store

__all__ = [
    "DEFAULT_TENANT",
    "Conflict",
    "EventRecord",
    "NodeFields",
    "NodeRecord",
    "NodeStatus",
    "Planner",
    "ProjectFields",
    "ProjectRecord",
    "ProjectStatus",
    "ReviewRecord",
    "ReviewStatus",
    "Store",
]
