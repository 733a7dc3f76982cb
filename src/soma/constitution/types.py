"""The values the policy engine takes and returns.

They are pydantic models with plain JSON-able fields because they cross process boundaries:
Temporal activities check actions and record decisions, and the audit trail stores them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EFFECT_RANK", "Action", "ActionKind", "Decision", "Effect", "Subject"]

Effect = Literal["allow", "deny", "require_approval", "redact"]
ActionKind = Literal["tool_call", "model_output", "message", "memory_write"]

EFFECT_RANK: dict[str, int] = {"allow": 0, "redact": 1, "require_approval": 2, "deny": 3}
"""Precedence of effects: when rules of several effects match, the highest rank decides."""


class Subject(BaseModel):
    """Who acts: the persona (``name`` or ``name@version``), its role, the tenant and capsule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    persona: str | None = None
    role: str | None = None
    tenant: str = "default"
    capsule: str | None = None


class Action(BaseModel):
    """What the subject wants to do.

    ``tool_call``: ``tool`` and its ``arguments``; ``model_output``: the model's ``text``;
    ``message``: the ``text`` one agent sends another; ``memory_write``: the ``text`` about to
    be kept in memory, where every later run of the tenant may read it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActionKind
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None


class Decision(BaseModel):
    """The verdict on one action.

    ``effect`` says whether to proceed: ``allow`` and ``redact`` proceed, ``require_approval``
    waits for a human, ``deny`` refuses. ``arguments`` and ``text`` are always the
    secret-masked versions, the ones to store, log and pass to other agents; a tool call runs
    with them only when the effect is ``redact`` (otherwise with the original arguments, so an
    agent can still write a config file that contains an e-mail address). ``findings`` names
    what was masked: secret kinds (``aws_access_key``) and ``rule:<id>`` for rule redactions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    effect: Effect
    rule_id: str | None = None
    reason: str
    arguments: dict[str, Any] | None = None
    text: str | None = None
    findings: list[str] = Field(default_factory=list)
    matched: list[str] = Field(
        default_factory=list, description="Ids of every rule that matched, winner first."
    )
    explanation: str = ""

    @property
    def proceeds(self) -> bool:
        """Whether the action may go ahead now (``allow`` or ``redact``)."""
        return self.effect in ("allow", "redact")
