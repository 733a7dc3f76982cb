"""Choose between the model planner and the template, and say which one planned and why.

``soma run`` must always get a plan when one is possible: with no model, or a model that cannot
write a valid plan, the deterministic template still gives a sound software-project plan. The
result records the fallback reason so the user knows the plan did not come from the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from soma.errors import PlanError
from soma.models.protocol import Model
from soma.models.types import Usage
from soma.planner.model_planner import PlanAttempt, PlanAttempts, plan_with_model
from soma.planner.template import check_goal, template_plan
from soma.specs.library import Library
from soma.specs.models import Plan

Mode = Literal["auto", "model", "template"]
PlannerKind = Literal["model", "template"]


class PlanResult(BaseModel):
    """The plan, who made it, why the template was used (None when the model planned), and the
    model's attempts and token usage (empty when no model was asked)."""

    plan: Plan
    planner: PlannerKind
    reason: str | None = None
    attempts: list[PlanAttempt] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)


async def make_plan(
    goal: str,
    library: Library,
    model: Model | None,
    *,
    mode: Mode = "auto",
    max_attempts: int = 3,
) -> PlanResult:
    """Plan ``goal``: ``auto`` tries the model then falls back to the template; ``model`` raises
    :class:`PlanError` when the model cannot plan; ``template`` never asks a model."""
    goal = check_goal(goal)
    if mode == "template":
        return _from_template(goal, library, "mode=template")
    if model is None:
        if mode == "model":
            raise PlanError("mode=model needs a model", hint="configure one, or use mode=auto")
        return _from_template(goal, library, "no model")
    tried = await plan_with_model(goal, library, model, max_attempts=max_attempts)
    if tried.plan is not None:
        return PlanResult(
            plan=tried.plan, planner="model", attempts=tried.attempts, usage=tried.usage
        )
    failure = _failure(tried)
    if mode == "model":
        raise PlanError(
            f"the model could not produce a valid plan: {failure}",
            hint="retry, use a stronger model, or use the template planner",
        )
    return _from_template(goal, library, failure, tried)


def _failure(tried: PlanAttempts) -> str:
    count = len(tried.attempts)
    noun = "attempt" if count == 1 else "attempts"
    return f"model failed after {count} {noun}: {tried.last_error}"


def _from_template(
    goal: str, library: Library, reason: str, tried: PlanAttempts | None = None
) -> PlanResult:
    """The template plan, keeping the model's failed attempts and usage for the record."""
    return PlanResult(
        plan=template_plan(goal, library),
        planner="template",
        reason=reason,
        attempts=tried.attempts if tried else [],
        usage=tried.usage if tried else Usage(),
    )
