"""The store: SomaAgentHub's own records of projects, plan nodes, events, reviews and
idempotent activity results and the audit log, on SQLite (default, under SOMA_HOME) or
PostgreSQL.

Open it with ``Store.open(settings.store_url)``; the schema is migrated to head on open.
"""

from soma.store.records import (
    DEFAULT_TENANT,
    AuditRecord,
    AuditVerification,
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
    "AuditRecord",
    "AuditVerification",
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
