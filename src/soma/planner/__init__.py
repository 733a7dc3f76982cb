"""Turn a goal into a Plan: a model planner that repairs its own mistakes, a deterministic
template planner, and :func:`make_plan`, which picks one and falls back when the model fails."""

from soma.planner.catalogue import capsule_index, plan_schema, render_catalogue
from soma.planner.model_planner import PlanAttempt, PlanAttempts, plan_with_model, system_prompt
from soma.planner.planner import Mode, PlannerKind, PlanResult, make_plan
from soma.planner.template import Shape, project_slug, template_plan

__all__ = [
    "Mode",
    "PlanAttempt",
    "PlanAttempts",
    "PlanResult",
    "PlannerKind",
    "Shape",
    "capsule_index",
    "make_plan",
    "plan_schema",
    "plan_with_model",
    "project_slug",
    "render_catalogue",
    "system_prompt",
    "template_plan",
]
