"""The ORM mapping of the store's tables.

This is what the code queries; the schema itself is owned by the Alembic revisions under
``migrations/versions`` (a test checks that the two do not drift apart). Revisions never import
this module, so changing a model here cannot silently rewrite history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soma.store.records import DEFAULT_TENANT

# JSONB on PostgreSQL (binary, indexable, compared by value); plain JSON text elsewhere.
# ``none_as_null`` stores Python None as SQL NULL rather than the JSON literal ``null``.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC there and re-tagged on the way out. Naive datetimes are refused on the way in because
    their meaning would depend on the machine that wrote them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Named constraints, so a later batch migration on SQLite can find and alter them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def _tenant() -> Mapped[str]:
    return mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )


def _count() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default="0")


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = _tenant()
    goal: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    planner: Mapped[str | None] = mapped_column(String(32))
    plan: Mapped[dict[str, Any] | None]
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    workspace_path: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(255))
    usage_input_tokens: Mapped[int] = _count()
    usage_output_tokens: Mapped[int] = _count()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Node(Base):
    __tablename__ = "nodes"

    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = _tenant()
    capsule: Mapped[str | None] = mapped_column(String(255))
    persona: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    attempts: Mapped[int] = _count()
    steps: Mapped[int] = _count()
    input_tokens: Mapped[int] = _count()
    output_tokens: Mapped[int] = _count()
    output: Mapped[dict[str, Any] | None]
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    last_event: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = _tenant()
    node_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "node_id", "attempt", name="uq_reviews_project_node_attempt"
        ),
        Index("ix_reviews_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = _tenant()
    node_id: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    comment: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]


class ActivityResult(Base):
    """The recorded outcome of a side-effecting activity, keyed by its idempotency key.

    ``project_id`` is deliberately not a foreign key: an activity may need idempotency before its
    project row exists (creating the project is itself such an activity).
    """

    __tablename__ = "activity_results"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[str] = _tenant()
    kind: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str | None] = mapped_column(String(128), index=True)
    result: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One policy decision in a tenant's hash-chained audit log (see :mod:`soma.store.audit`).

    ``project_id`` is deliberately not a foreign key: deleting a project must not delete (and so
    break) the audit chain, and a decision can precede its project row. ``prev_hash`` is unique
    per tenant, so even a buggy writer cannot fork a chain: a second successor of the same record
    is refused by the database.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "idempotency_key", name="uq_audit_log_tenant_idempotency_key"
        ),
        UniqueConstraint("tenant_id", "prev_hash", name="uq_audit_log_tenant_prev_hash"),
        Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),
        Index("ix_audit_log_tenant_project_id", "tenant_id", "project_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    project_id: Mapped[str | None] = mapped_column(String(128))
    node_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(255))
    action_kind: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str | None] = mapped_column(String(255))
    arguments_digest: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str | None] = mapped_column(String(255))
    effect: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def _flag() -> Mapped[bool]:
    return mapped_column(Boolean, default=False, server_default=false())


class Tenant(Base):
    """An organisation: every user, key, project and audit record belongs to exactly one.

    ``id`` is a human-chosen slug (it shows up in URLs and CLI commands). The rate limits are
    per-tenant overrides of the gateway's settings; NULL means "use the default".
    """

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    requests_per_min: Mapped[int | None] = mapped_column(Integer)
    tokens_per_min: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = _flag()


class User(Base):
    """A person in one tenant. The same email in two tenants is two users.

    ``(oidc_issuer, oidc_subject)`` is the stable identity at a login provider (emails can
    change there, subjects cannot); it is unique across tenants, so one provider account never
    maps to two users. Both are NULL for users who only use API keys.
    """

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc_identity"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    oidc_issuer: Mapped[str | None] = mapped_column(String(512))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = _flag()


class ApiKey(Base):
    """An API key of one user. Only the sha256 of its secret is kept, never the secret.

    ``id`` is the public part of the key (``soma_<id>_<secret>``), so a lookup is one primary
    key read. ``scopes`` narrows the user's role; NULL means everything the role allows.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = _tenant()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


# -- marketplace -------------------------------------------------------------------------------


class MarketPublisher(Base):
    """One signing key of a publisher name in the registry.

    The tenant that registered a name's first key owns the name: only it may add keys or publish
    under it. Every row of one publisher carries the same ``tenant_id`` (the store enforces
    it), so ownership is one indexed read rather than a table of its own.
    """

    __tablename__ = "market_publishers"

    publisher: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MarketVersion(Base):
    """One published, immutable package version with its archive.

    The catalogue is shared by every tenant by design (it is what tenants install from), so it is
    not scoped by tenant; ``published_tenant``/``published_by`` record who published it.
    ``kind``, ``publisher``, ``description`` and ``tags`` repeat the manifest so listings and the
    search index never load the manifest or the archive.
    """

    __tablename__ = "market_versions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    publisher: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(JSONType)
    manifest: Mapped[dict[str, Any]]
    digest: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any]]
    archive: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    yanked: Mapped[bool] = _flag()
    yank_reason: Mapped[str | None] = mapped_column(Text)
    downloads: Mapped[int] = _count()
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_tenant: Mapped[str] = mapped_column(String(64))
    published_by: Mapped[str] = mapped_column(String(64))


class MarketRating(Base):
    """One user's rating of a package (any version); rating again replaces it."""

    __tablename__ = "market_ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stars: Mapped[int] = mapped_column(Integer)
    rated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MarketInstall(Base):
    """A package installed into a tenant's library: one version per name and tenant."""

    __tablename__ = "market_installs"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    publisher: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(Text)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)


class MarketTrust(Base):
    """A publisher key that a tenant trusts to sign what it installs."""

    __tablename__ = "market_trust"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    publisher: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- secrets -----------------------------------------------------------------------------------


class TenantSecret(Base):
    """One encrypted secret of a tenant (an adapter credential), sealed by :mod:`soma.secrets`.

    Only ciphertext reaches the database: the store cannot read what it keeps, so a leaked
    backup or a SQL console shows nothing usable without the instance's secret key.
    ``key_version`` names the key derivation that sealed the row, so a later key rotation can
    tell old rows from new ones without trying to decrypt them.
    """

    __tablename__ = "tenant_secrets"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class UsageEvent(Base):
    """One metered unit of work: a model call's tokens, a tool call, sandbox CPU seconds or
    workspace storage. ``key`` is the activity's idempotency key, unique per tenant, so a
    retried or replayed activity is metered exactly once."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        Index("ix_usage_events_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(128), index=True)
    node_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(255))
    tool: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    quantity: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantBudget(Base):
    """A tenant's monthly limits; None means unlimited. Checked before work starts."""

    __tablename__ = "tenant_budgets"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    monthly_cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    warn_fraction: Mapped[float] = mapped_column(Float, default=0.8, server_default="0.8")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationRule(Base):
    """Per tenant: events of ``event_type`` go to ``channel`` (webhook, slack, email) at
    ``target``; ``secret_name`` names the vault secret that signs or authorises them."""

    __tablename__ = "notification_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    secret_name: Mapped[str | None] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationDelivery(Base):
    """One notification owed to one rule: its outbox row, retried until delivered or given
    up. ``(rule_id, event_key)`` is unique, so an event is enqueued once per rule."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("rule_id", "event_key"),
        Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    rule_id: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = _count()
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class EventCursor(Base):
    """How far a consumer of the events table (the notifier, an exporter) has got."""

    __tablename__ = "event_cursors"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectResource(Base):
    """Something provisioned for a project through an adapter (a bare repository, a GitHub
    repository, an S3 bucket), kept so it can be torn down with the project. ``(tenant_id,
    project_id, kind, name)`` is unique: provisioning the same request twice reuses the row."""

    __tablename__ = "project_resources"
    __table_args__ = (UniqueConstraint("tenant_id", "project_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    project_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    location: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    torn_down_at: Mapped[datetime | None]


class MemoryRow(Base):
    """One memory item of a tenant, with its embedding (float32 bytes) for the embedded index."""

    __tablename__ = "memory_items"
    __table_args__ = (Index("ix_memory_items_tenant_scope", "tenant_id", "scope"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]]
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
