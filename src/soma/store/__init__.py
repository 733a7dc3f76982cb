"""The store: SomaAgentHub's own records of projects, plan nodes, events, reviews,
idempotent activity results, the audit log, and tenants, users and API keys, on SQLite (default,
under SOMA_HOME) or PostgreSQL.

Open it with ``Store.open(settings.store_url)``; the schema is migrated to head on open.
"""

from soma.errors import Conflict
from soma.store.records import (
    DEFAULT_TENANT,
    ApiKeyRecord,
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
    TenantRecord,
    UserRecord,
)
from soma.store.store import Store

__all__ = [
    "DEFAULT_TENANT",
    "ApiKeyRecord",
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
    "TenantRecord",
    "UserRecord",
]
