"""The four document kinds: Capsule, Persona, Constitution and Plan.

They are strict (unknown fields are errors, so typos surface at load time rather than as silently
ignored settings) and immutable once loaded, so a spec can be shared between concurrent runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import semver
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$"
_NAME_RE = re.compile(NAME_PATTERN)


def _check_semver(value: str) -> str:
    if not semver.Version.is_valid(value):
        raise ValueError(f"{value!r} is not a semantic version such as 1.0.0")
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: "
            "use lower-case letters, digits and single '-', '_' or '.'"
        )
    return value


SemVer = Annotated[str, AfterValidator(_check_semver)]
Name = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_check_name)]
JsonSchema = dict[str, Any]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _object_schema() -> JsonSchema:
    return {"type": "object", "properties": {}}


class ModelPreference(Spec):
    """Which models a persona prefers, in order; the first one that is configured is used."""

    prefer: list[str] = Field(default_factory=lambda: ["local"])
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)


class Persona(Spec):
    kind: Literal["persona"] = "persona"
    name: Name
    version: SemVer
    role: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    backstory: str = ""
    skills: list[str] = Field(default_factory=list)
    model: ModelPreference = Field(default_factory=ModelPreference)
    tools: list[str] = Field(
        default_factory=list, description="Tool name patterns (fnmatch) this persona may use."
    )


class ToolGrant(Spec):
    """A tool a capsule uses, with optional argument constraints enforced before each call."""

    name: str = Field(min_length=1)
    constraints: dict[str, Any] = Field(default_factory=dict)


class KnowledgeItem(Spec):
    """Context given to the agent: a workspace file, an inline text, or a memory query."""

    file: str | None = None
    text: str | None = None
    memory: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> KnowledgeItem:
        given = [k for k in ("file", "text", "memory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'file', 'text' or 'memory'")
        return self


class Budget(Spec):
    max_steps: int = Field(default=12, ge=1, le=1000)
    max_tokens: int = Field(default=50_000, ge=1)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_wall_s: float = Field(default=900.0, gt=0)


class Artifact(Spec):
    """Writes an output field to a workspace file when the run ends, so weak models need no tools.

    ``from`` names the output field; ``path`` is relative to the workspace root.
    """

    source: str = Field(alias="from", min_length=1)
    path: str = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EvalCheck(Spec):
    """One machine check of a capsule run's result.

    ``kind``: ``schema`` (output validates), ``contains`` (output ``field`` contains ``value``,
    case-insensitive), ``regex`` (``field`` matches ``value``), ``file_exists`` (``value`` is a
    workspace path), ``min_length`` (``field`` has at least ``value`` characters).
    """

    kind: Literal["schema", "contains", "regex", "file_exists", "min_length"]
    field: str | None = None
    value: Any = None


class Eval(Spec):
    name: Name
    input: dict[str, Any] = Field(default_factory=dict)
    checks: list[EvalCheck] = Field(min_length=1)


ReviewMode = Literal["none", "auto", "human"]


class Capsule(Spec):
    kind: Literal["capsule"] = "capsule"
    name: Name
    version: SemVer
    description: str = Field(min_length=1)
    persona: str = Field(min_length=1, description="Persona name, optionally name@version-range.")
    inputs: JsonSchema = Field(default_factory=_object_schema)
    outputs: JsonSchema = Field(default_factory=_object_schema)
    tools: list[ToolGrant] = Field(default_factory=list)
    knowledge: list[KnowledgeItem] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)
    instructions: str = Field(min_length=1)
    review: ReviewMode = "none"
    critique: bool = False
    budget: Budget = Field(default_factory=Budget)
    artifacts: list[Artifact] = Field(default_factory=list)
    evals: list[Eval] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _tools_as_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tools"), list):
            data = dict(data)
            data["tools"] = [{"name": t} if isinstance(t, str) else t for t in data["tools"]]
        return data

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


Effect = Literal["allow", "deny", "require_approval", "redact"]


class Principle(Spec):
    id: Name
    text: str = Field(min_length=1)


class RuleSubject(Spec):
    persona: str | None = None
    role: str | None = None
    tenant: str | None = None
    capsule: str | None = None


class RuleAction(Spec):
    """What a rule is about: a tool-name pattern, a model output, an agent-to-agent message, or
    a memory write."""

    tool: str | None = None
    kind: Literal["tool_call", "model_output", "message", "memory_write"] = "tool_call"


class Rule(Spec):
    id: Name
    effect: Effect
    reason: str = Field(min_length=1)
    subject: RuleSubject = Field(default_factory=RuleSubject)
    action: RuleAction = Field(default_factory=RuleAction)
    when: dict[str, Any] = Field(
        default_factory=dict, description="Argument conditions, e.g. {command_matches: 'rm -rf *'}."
    )


class Constitution(Spec):
    kind: Literal["constitution"] = "constitution"
    name: Name
    version: SemVer
    description: str = ""
    principles: list[Principle] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


class PlanNode(Spec):
    id: Name
    capsule: str = Field(min_length=1, description="Capsule name, optionally name@version-range.")
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Literal values, or '${node_id.outputs.field}' to wire another node's output.",
    )
    depends_on: list[str] = Field(default_factory=list)
    on_failure: Literal["stop", "retry", "continue"] = Field(
        default="stop",
        description="stop: start no new nodes; retry: run the node again (up to retries); "
        "continue: skip its dependents but let independent branches finish.",
    )
    retries: int = Field(default=1, ge=0, le=10, description="Re-runs when on_failure=retry.")


class Plan(Spec):
    kind: Literal["plan"] = "plan"
    goal: str = Field(min_length=1)
    nodes: list[PlanNode] = Field(min_length=1)


SpecKind = Literal["capsule", "persona", "constitution", "plan"]
SPEC_TYPES: dict[str, type[Spec]] = {
    "capsule": Capsule,
    "persona": Persona,
    "constitution": Constitution,
    "plan": Plan,
}
