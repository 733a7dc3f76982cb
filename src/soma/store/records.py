"""What the store hands back: plain, frozen pydantic records.

Callers (Temporal activities, the CLI, the gateway) never see ORM objects, so nothing they hold
is tied to a session or can lazily hit the database from another thread after it is closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from soma.marketplace.manifest import Manifest, PackageKind

DEFAULT_TENANT = "default"

ProjectStatus = Literal[
    "pending", "planning", "running", "waiting_review", "succeeded", "failed", "cancelled"
]
NodeStatus = Literal[
    "pending", "ready", "running", "waiting_review", "succeeded", "failed", "skipped", "cancelled"
]
ReviewStatus = Literal["pending", "approved", "rejected"]
Planner = Literal["model", "template"]

# Reaching one of these stamps ``finished_at`` (unless the caller gives it explicitly).
PROJECT_TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
NODE_TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class ProjectRecord(_Record):
    """One agent project: a goal, its plan and where its durable run stands."""

    id: str
    tenant_id: str
    goal: str
    status: ProjectStatus
    planner: Planner | None
    plan: dict[str, Any] | None
    workflow_id: str | None
    workspace_path: str | None
    model: str | None = None
    usage_input_tokens: int
    usage_output_tokens: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class NodeRecord(_Record):
    """One node of a project's plan DAG (a capsule run) and its latest state."""

    project_id: str
    node_id: str
    tenant_id: str
    capsule: str | None
    persona: str | None
    status: NodeStatus
    attempts: int
    steps: int
    input_tokens: int
    output_tokens: int
    output: dict[str, Any] | None
    commit_sha: str | None
    error: str | None
    last_event: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EventRecord(_Record):
    """One line of a project's append-only history; ``id`` orders events within a project."""

    id: int
    project_id: str
    tenant_id: str
    node_id: str | None
    kind: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime


class ReviewRecord(_Record):
    """A human review gate on one attempt of one node."""

    id: int
    project_id: str
    tenant_id: str
    node_id: str
    attempt: int
    status: ReviewStatus
    comment: str | None
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None


class AuditRecord(_Record):
    """One policy decision in a tenant's tamper-evident audit log.

    ``hash`` is ``sha256(prev_hash + canonical JSON of the other fields)`` (see
    :func:`soma.store.audit.audit_hash`); ``id`` orders the chain but is not hashed.
    """

    id: int
    tenant_id: str
    project_id: str | None
    node_id: str | None
    actor: str
    action_kind: str
    tool: str | None
    arguments_digest: str
    rule_id: str | None
    effect: str
    reason: str
    key: str | None = Field(validation_alias=AliasChoices("key", "idempotency_key"))
    created_at: datetime
    prev_hash: str
    hash: str


class AuditVerification(_Record):
    """The outcome of re-checking a tenant's audit chain from its first record.

    ``checked`` counts the records examined (up to and including the first bad one);
    ``head_hash`` is the hash of the last good record, worth keeping somewhere else: the chain
    alone cannot reveal that its newest records were deleted, an external copy of the head can.
    """

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None
    head_hash: str | None = None


# The keyword arguments of Store.update_project / Store.upsert_node. They are TypedDicts so that
# mypy checks callers' ``**fields`` and pydantic validates them at runtime (unknown names and
# bad statuses are rejected before anything reaches the database). Validation is lax on purpose:
# workflows send these through Temporal as JSON, so datetimes may arrive as ISO strings.


@with_config(ConfigDict(extra="forbid"))
class ProjectFields(TypedDict, total=False):
    """Columns of a project that :meth:`Store.update_project` may change."""

    goal: str
    status: ProjectStatus
    planner: Planner | None
    plan: dict[str, Any] | None
    workflow_id: str | None
    workspace_path: str | None
    usage_input_tokens: int
    usage_output_tokens: int
    error: str | None
    finished_at: AwareDatetime | None


@with_config(ConfigDict(extra="forbid"))
class NodeFields(TypedDict, total=False):
    """Columns of a node that :meth:`Store.upsert_node` may set."""

    capsule: str | None
    persona: str | None
    status: NodeStatus
    attempts: int
    steps: int
    input_tokens: int
    output_tokens: int
    output: dict[str, Any] | None
    commit_sha: str | None
    error: str | None
    last_event: str | None
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None


class TenantRecord(_Record):
    """An organisation; ``requests_per_min``/``tokens_per_min`` None means the gateway default."""

    id: str
    name: str
    created_at: datetime
    requests_per_min: int | None
    tokens_per_min: int | None
    disabled: bool


class UserRecord(_Record):
    """A person in one tenant.

    ``role`` is one of :data:`soma.identity.ROLES`; the store keeps it as text and does not
    interpret it (the identity package above it does).
    """

    id: str
    tenant_id: str
    email: str
    name: str
    role: str
    oidc_issuer: str | None
    oidc_subject: str | None
    created_at: datetime
    disabled: bool


class ApiKeyRecord(_Record):
    """An API key's metadata. The secret itself is never stored, only its sha256.

    ``secret_hash`` is left out of ``repr`` and of ``model_dump``/JSON, so echoing a record in a
    log line or an API response cannot leak what is needed to check a guessed secret.
    ``scopes`` None means everything the owner's role allows.
    """

    id: str
    tenant_id: str
    user_id: str
    name: str
    secret_hash: str = Field(repr=False, exclude=True)
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class PublisherKeyRecord(_Record):
    """A signing key registered for a publisher name; ``tenant_id`` owns the name."""

    publisher: str
    key_id: str
    tenant_id: str
    public_key: str
    created_at: datetime


class TrustedKeyRecord(_Record):
    """A publisher key one tenant trusts for what it installs."""

    tenant_id: str
    publisher: str
    key_id: str
    public_key: str
    added_at: datetime


class InstalledPackage(_Record):
    """A package version installed into a tenant's library, and where it came from.

    ``source`` is the registry URL it was downloaded from, or ``local`` for this instance's own
    registry. The manifest is kept so dependents can be found without the archive.
    """

    tenant_id: str
    name: str
    version: str
    kind: PackageKind
    publisher: str
    digest: str
    manifest: Manifest
    source: str
    installed_at: datetime


class PackageDoc(_Record):
    """What the search index needs of a package: its latest non-yanked version's text."""

    name: str
    kind: PackageKind
    publisher: str
    description: str
    tags: tuple[str, ...]


class SecretInfo(_Record):
    """What may be shown about a tenant's secret: its name and history, never its value.

    There is deliberately no field for the value or ciphertext, so no listing, log line or API
    response built from this record can carry one.
    """

    tenant_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


class SecretRow(_Record):
    """A sealed secret as stored: only :mod:`soma.secrets` opens it.

    The ciphertext and nonce are kept out of ``repr`` so a debugging print stays short and
    does not invite copying sealed material around.
    """

    tenant_id: str
    name: str
    nonce: bytes = Field(repr=False)
    ciphertext: bytes = Field(repr=False)
    key_version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str
