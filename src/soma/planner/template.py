"""The deterministic planner: a fixed software-project DAG over the built-in capsules.

It needs no model, so ``soma run`` can always plan (offline, with no model configured, or when
the model cannot produce a valid plan), and its output is the same for the same goal, which makes
it the reference a model-made plan is compared with.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

from soma.errors import PlanError
from soma.planner.catalogue import capsule_index
from soma.specs.library import Library
from soma.specs.models import Plan, PlanNode
from soma.specs.plans import validate_plan

Shape = Literal["full", "minimal"]

FIRST_VERSION = "0.1.0"
"""The version the release notes are written for: a template plan builds a project from scratch."""

_RANGE = "^1.0"
"""The wiring below follows the 1.x inputs and outputs of the built-in capsules; a future 2.x
may rename them, so it must never be picked up silently."""

_STOP_TEXT = """
a an the and or of for to in on with that which who from into by as is are be it its my our your
their this these those build create make write develop implement simple small new please
"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
"""Words that say nothing about the project, skipped when naming it from the goal."""
_SLUG_WORDS = 3
_SLUG_MAX = 40

SPEC = "${spec.outputs.spec}"
ARCHITECTURE = "${design.outputs.architecture}"


def template_plan(goal: str, library: Library, shape: Shape = "full") -> Plan:
    """The software-project plan for ``goal``, validated against ``library``.

    ``full``: spec → design → scaffold → implement → tests → fix → (review ∥ docs ∥ security) →
    release. ``minimal``: spec → implement → tests, for quick runs and small models.
    Raises :class:`PlanError` when the goal is unusable or the library lacks a capsule.
    """
    goal = check_goal(goal)
    nodes = _full_nodes(goal) if shape == "full" else _minimal_nodes(goal)
    plan = Plan(goal=goal, nodes=nodes)
    validate_plan(plan, capsule_index(library))
    return plan


def check_goal(goal: str) -> str:
    """The goal without surrounding blanks; an empty one is refused before any planning work."""
    text = goal.strip()
    if not text:
        raise PlanError("the goal is empty", hint='describe what to build, e.g. soma run "a CLI"')
    return text


def project_slug(goal: str) -> str:
    """A distribution name for scaffold-repo (``^[a-z][a-z0-9_-]*$``) from the goal's first
    meaningful words; the spec's title cannot be wired instead because it is free text."""
    ascii_goal = unicodedata.normalize("NFKD", goal).encode("ascii", "ignore").decode()
    words = [w for w in re.findall(r"[a-z0-9]+", ascii_goal.lower()) if w not in _STOP_WORDS]
    while words and not words[0][0].isalpha():
        words.pop(0)  # the name must start with a letter
    return "-".join(words[:_SLUG_WORDS])[:_SLUG_MAX].strip("-") or "project"


def _node(node_id: str, capsule: str, inputs: dict[str, Any], *deps: str) -> PlanNode:
    return PlanNode(id=node_id, capsule=f"{capsule}@{_RANGE}", inputs=inputs, depends_on=list(deps))


def _full_nodes(goal: str) -> list[PlanNode]:
    """Every reference's node is a direct dependency, as ``validate_plan`` requires."""
    feature = f"Every requirement of the specification for: {goal}"
    return [
        _node("spec", "write-spec", {"goal": goal}),
        _node("design", "design-architecture", {"spec": SPEC}, "spec"),
        _node(
            "scaffold",
            "scaffold-repo",
            {"project_name": project_slug(goal), "architecture": ARCHITECTURE},
            "design",
        ),
        _node(
            "implement",
            "implement-feature",
            {"feature": feature, "spec": SPEC, "architecture": ARCHITECTURE},
            "spec",
            "design",
            "scaffold",
        ),
        _node("tests", "write-tests", {"spec": SPEC}, "spec", "implement"),
        _node("fix", "run-tests-and-fix", {}, "tests"),
        _node("review", "review-code", {"spec": SPEC}, "spec", "fix"),
        _node("docs", "write-docs", {"spec": SPEC}, "spec", "fix"),
        _node("security", "security-review", {"spec": SPEC}, "spec", "fix"),
        _node(
            "release",
            "release-notes",
            {"version": FIRST_VERSION, "spec": SPEC},
            "spec",
            "review",
            "docs",
            "security",
        ),
    ]


def _minimal_nodes(goal: str) -> list[PlanNode]:
    feature = f"Every requirement of the specification for: {goal}"
    return [
        _node("spec", "write-spec", {"goal": goal}),
        _node("implement", "implement-feature", {"feature": feature, "spec": SPEC}, "spec"),
        _node("tests", "write-tests", {"spec": SPEC}, "spec", "implement"),
    ]
