"""The store: SomaAgentHub's own records of projects, plan nodes, events, reviews,
idempotent activity results, the audit log, tenants, users and API keys, and the marketplace's
packages, installs and trusted keys, on SQLite (default, under SOMA_HOME) or PostgreSQL.

Open it with ``Store.open(settings.store_url)``; the schema is migrated to head on open.
"""

from soma.errors import Conflict
from soma.store.records import (
    DEFAULT_TENANT,
    ApiKeyRecord,
    AuditRecord,
    AuditVerification,
    EventRecord,
    InstalledPackage,
    NodeFields,
    NodeRecord,
    NodeStatus,
    PackageDoc,
    Planner,
    ProjectFields,
    ProjectRecord,
    ProjectStatus,
    PublisherKeyRecord,
    ReviewRecord,
    ReviewStatus,
    SecretInfo,
    SecretRow,
    TenantRecord,
    TrustedKeyRecord,
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
    "InstalledPackage",
    "NodeFields",
    "NodeRecord",
    "NodeStatus",
    "PackageDoc",
    "Planner",
    "ProjectFields",
    "ProjectRecord",
    "ProjectStatus",
    "PublisherKeyRecord",
    "ReviewRecord",
    "ReviewStatus",
    "SecretInfo",
    "SecretRow",
    "Store",
    "TenantRecord",
    "TrustedKeyRecord",
    "UserRecord",
]
