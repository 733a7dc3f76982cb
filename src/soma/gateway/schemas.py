"""Request and response bodies of the REST API (``/api/v1``): the public contract, so the
OpenAPI document is generated from these and nothing internal leaks through."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from soma.identity.permissions import Permission, Role
from soma.store import NodeRecord, ProjectRecord
from soma.store.resources import ResourceRecord
from soma.workspace.resources import ResourceRequest

GOAL_MAX_CHARS = 4000
MAX_ID = 2**63 - 1
"""Ids are 64-bit in the store; a larger one in a query is refused as invalid, not a crash."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Body):
    goal: str = Field(min_length=1, max_length=GOAL_MAX_CHARS, description="What to achieve.")
    planner: Literal["auto", "model", "template"] = "auto"
    model: str | None = Field(
        default=None, max_length=200, description="Model spec; default: the server's SOMA_MODEL."
    )
    concurrency: int = Field(default=3, ge=1, le=32)
    max_tokens: int | None = Field(default=None, ge=1, description="Project token budget.")
    resources: list[ResourceRequest] = Field(
        default_factory=list,
        max_length=16,
        description="Resources to provision before the project starts, e.g. "
        '[{"kind": "github.repo", "name": "acme/todo-cli"}]; torn down with '
        "POST /api/v1/projects/{id}/teardown.",
    )


class ResourceOut(BaseModel):
    """A resource provisioned for a project, and where it stands."""

    kind: str
    name: str
    location: str | None = Field(description="Path, URL or ARN.")
    status: str = Field(description="provisioned, torn_down or failed.")
    error: str | None
    details: dict[str, Any] | None
    created_at: datetime
    torn_down_at: datetime | None

    @classmethod
    def of(cls, record: ResourceRecord) -> ResourceOut:
        return cls(
            kind=record.kind,
            name=record.name,
            location=record.location,
            status=record.status,
            error=record.error,
            details=record.details,
            created_at=record.created_at,
            torn_down_at=record.torn_down_at,
        )


class RunOut(BaseModel):
    """One node of the plan: a capsule run and where it stands."""

    node_id: str
    capsule: str | None
    persona: str | None
    status: str
    attempts: int
    steps: int
    input_tokens: int
    output_tokens: int
    commit_sha: str | None
    error: str | None
    last_event: str | None
    output: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, node: NodeRecord) -> RunOut:
        return cls.model_validate(node.model_dump())


class ProjectOut(BaseModel):
    id: str
    goal: str
    status: str
    planner: str | None
    model: str | None = Field(default=None, description="The model spec the agents run on.")
    plan: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    runs: list[RunOut] | None = Field(
        default=None, description="The plan's runs; only on the single-project view."
    )
    resources: list[ResourceOut] | None = Field(
        default=None, description="Provisioned resources; only on the single-project view."
    )

    @classmethod
    def of(
        cls,
        record: ProjectRecord,
        runs: list[NodeRecord] | None = None,
        resources: list[ResourceRecord] | None = None,
    ) -> ProjectOut:
        return cls(
            id=record.id,
            goal=record.goal,
            status=record.status,
            planner=record.planner,
            model=record.model,
            plan=record.plan,
            input_tokens=record.usage_input_tokens,
            output_tokens=record.usage_output_tokens,
            error=record.error,
            created_at=record.created_at,
            updated_at=record.updated_at,
            finished_at=record.finished_at,
            runs=None if runs is None else [RunOut.of(n) for n in runs],
            resources=None if resources is None else [ResourceOut.of(r) for r in resources],
        )


class EventOut(BaseModel):
    id: int
    node_id: str | None
    kind: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime


class ReviewOut(BaseModel):
    id: int
    project_id: str
    node_id: str
    round: int = Field(description="Review round of the node (a rejected round starts another).")
    status: str
    comment: str | None
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None


class ReviewDecisionIn(_Body):
    comment: str = Field(default="", max_length=10_000)


class AuditOut(BaseModel):
    id: int
    project_id: str | None
    node_id: str | None
    actor: str
    action_kind: str
    tool: str | None
    rule_id: str | None
    effect: str
    reason: str
    created_at: datetime
    hash: str


class AuditVerifyOut(BaseModel):
    ok: bool
    checked: int = Field(description="Records examined, up to and including the first bad one.")
    first_bad_id: int | None = None
    problem: str | None = None
    head_hash: str | None = Field(
        default=None, description="Hash of the last good record: keep a copy elsewhere."
    )


class ProjectUsage(BaseModel):
    project_id: str
    input_tokens: int
    output_tokens: int


class UsageShareOut(BaseModel):
    name: str | None = Field(description="The persona or model spec; null where not recorded.")
    runs: int = Field(description="Runs (per persona) or projects (per model) counted.")
    input_tokens: int
    output_tokens: int


class UsageOut(BaseModel):
    tenant_id: str
    input_tokens: int
    output_tokens: int
    projects: list[ProjectUsage]
    by_persona: list[UsageShareOut] = Field(default_factory=list)
    by_model: list[UsageShareOut] = Field(default_factory=list)


class MeOut(BaseModel):
    tenant_id: str
    user_id: str
    role: Role
    permissions: list[Permission]
    key_id: str | None


class KeyCreate(_Body):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Permission] | None = Field(
        default=None, description="Narrow the key to these permissions; default: the role's."
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class KeyOut(BaseModel):
    id: str
    name: str
    user_id: str
    scopes: list[Permission] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret key. Shown once: it is stored only as a hash.")


class UserCreate(_Body):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Role
    name: str = Field(default="", max_length=200)


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime
    disabled: bool


class SessionOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user_id: str
    tenant_id: str
