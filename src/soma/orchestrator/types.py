"""Data that crosses the workflow/activity boundary. Plain pydantic models, serialised by the
pydantic data converter, so workflow histories stay readable and replayable."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from soma.agents.loop import AgentTask
from soma.constitution import Action, Subject
from soma.models.types import ModelRequest, ToolCall, Usage
from soma.specs.models import Plan, ReviewMode

NodeStatus = Literal[
    "pending", "running", "waiting_review", "succeeded", "failed", "skipped", "cancelled"
]
ProjectStatus = Literal["running", "waiting_review", "succeeded", "failed", "cancelled"]


class Timeouts(BaseModel):
    """Activity timeouts. Short heartbeats let a crashed worker's tool call move on quickly."""

    model_s: float = 300.0
    tool_s: float = 600.0
    tool_heartbeat_s: float = 30.0
    record_s: float = 30.0


class CapsuleParams(BaseModel):
    project_id: str
    node_id: str
    capsule: str
    inputs: dict[str, Any]
    model: str
    attempt: int = 1
    feedback: str | None = None
    """Why the previous attempt of this node failed, for the agent to do better."""
    max_review_rounds: int = 2
    timeouts: Timeouts = Field(default_factory=Timeouts)


class PrepareParams(BaseModel):
    params: CapsuleParams
    run_id: str
    feedback: str | None = None


class PreparedCapsule(BaseModel):
    task: AgentTask
    capsule: str
    persona: str
    review: ReviewMode
    max_wall_s: float
    quick_tools: list[str] = Field(default_factory=list)
    role: str = ""
    critique: bool = False
    tenant: str = "default"

    def subject(self) -> Subject:
        return Subject(
            persona=self.persona,
            role=self.role,
            capsule=self.capsule.split("@")[0],
            tenant=self.tenant,
        )


class ModelCallParams(BaseModel):
    key: str
    project_id: str
    model: str
    request: ModelRequest
    node_id: str | None = None
    subject: Subject | None = None
    capsule: str | None = None


class ToolCallParams(BaseModel):
    key: str
    project_id: str
    node_id: str
    capsule: str
    persona: str
    run_id: str
    offered: list[str]
    call: ToolCall


class FinishParams(BaseModel):
    key: str
    project_id: str
    capsule: str
    persona: str
    run_id: str
    ok: bool
    output: Any = None
    error: str | None = None
    node_id: str | None = None
    subject: Subject | None = None


class FinishResult(BaseModel):
    artifacts: list[str] = Field(default_factory=list)
    commit: str | None = None
    output: Any = None
    """The output as it leaves the agent: checked and redacted by the constitution."""


class CheckParams(BaseModel):
    """A constitution check of one agent action, audited once per key."""

    key: str
    project_id: str
    node_id: str
    capsule: str
    subject: Subject
    action: Action


class JudgeParams(BaseModel):
    """A model judging a node's output: the critic (principles) or the auto-reviewer (purpose)."""

    key: str
    project_id: str
    node_id: str
    capsule: str
    model: str
    output: Any


class CritiqueVerdict(BaseModel):
    ok: bool
    critique: str = ""


class ReviewDecision(BaseModel):
    approved: bool
    comment: str = ""
    reviewer: str = "human"
    round: int | None = None
    """The review round decided (0-based, as in the store); None decides the current one."""


class NodeUpdate(BaseModel):
    node_id: str
    status: str
    message: str
    review_round: int | None = None


class RecordParams(BaseModel):
    """One store write: an event plus optional node/project field updates, done once per key."""

    key: str
    project_id: str
    node_id: str | None = None
    kind: str
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    node: dict[str, Any] | None = None
    project: dict[str, Any] | None = None
    review_round: int | None = None
    review_decision: ReviewDecision | None = None


class NodeResult(BaseModel):
    node_id: str
    ok: bool
    persona: str | None = None
    output: Any = None
    error: str | None = None
    failure_kind: str | None = None
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    commit: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    review_rounds: int = 0


class NodeState(BaseModel):
    node_id: str
    capsule: str
    status: NodeStatus = "pending"
    attempts: int = 0
    usage: Usage = Field(default_factory=Usage)
    last_event: str = ""
    commit: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ProjectParams(BaseModel):
    project_id: str
    goal: str
    plan: Plan
    model: str
    concurrency: int = 4
    node_retries: int = 0
    max_project_tokens: int | None = None
    max_review_rounds: int = 2
    timeouts: Timeouts = Field(default_factory=Timeouts)


class ProjectState(BaseModel):
    project_id: str
    status: ProjectStatus = "running"
    nodes: dict[str, NodeState]
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class ModelFailure(BaseModel):
    """Why a model activity gave up, returned as data so the loop can record it and stop."""

    error: str
    invalid_reply: bool = False
    """True when the model answered in an unusable shape: the agent is asked again."""
