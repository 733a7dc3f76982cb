from __future__ import annotations

import pytest

from soma.errors import PlanError
from soma.planner import capsule_index, project_slug, template_plan
from soma.specs.library import Library
from soma.specs.plans import output_references, validate_plan

from .plans import layers

GOALS = [
    "A command-line tool that counts words, lines and characters in text files",
    "todo app",
    "Build a REST API for a library: books, loans and members.",
    "  42 ways to parse CSV  ",
    "Écrire un convertisseur d'unités",
]


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


@pytest.mark.parametrize("goal", GOALS)
def test_full_plan_validates(goal: str, library: Library) -> None:
    plan = template_plan(goal, library)
    validate_plan(plan, capsule_index(library))
    assert plan.goal == goal.strip()
    assert plan.nodes[0].inputs == {"goal": goal.strip()}


def test_full_plan_layers(library: Library) -> None:
    plan = template_plan("a word counter", library)
    assert layers(plan) == [
        {"spec"},
        {"design"},
        {"scaffold"},
        {"implement"},
        {"tests"},
        {"fix"},
        {"review", "docs", "security"},
        {"release"},
    ]


def test_full_plan_uses_each_builtin_capsule_once(library: Library) -> None:
    plan = template_plan("a word counter", library)
    names = [node.capsule.split("@")[0] for node in plan.nodes]
    assert names == [
        "write-spec",
        "design-architecture",
        "scaffold-repo",
        "implement-feature",
        "write-tests",
        "run-tests-and-fix",
        "review-code",
        "write-docs",
        "security-review",
        "release-notes",
    ]


@pytest.mark.parametrize("shape", ["full", "minimal"])
def test_every_required_input_is_given_and_every_reference_is_a_dependency(
    shape: str, library: Library
) -> None:
    plan = template_plan("a word counter", library, shape=shape)  # type: ignore[arg-type]
    for node in plan.nodes:
        capsule = library.capsule(node.capsule)
        assert set(capsule.inputs.get("required", [])) <= set(node.inputs)
        for _, source, _ in output_references(node.inputs):
            assert source in node.depends_on


def test_parallel_reviews_depend_on_fix_and_release_waits_for_all(library: Library) -> None:
    nodes = {n.id: n for n in template_plan("a word counter", library).nodes}
    for node_id in ("review", "docs", "security"):
        assert "fix" in nodes[node_id].depends_on
    assert {"review", "docs", "security"} <= set(nodes["release"].depends_on)
    assert nodes["design"].inputs["spec"] == "${spec.outputs.spec}"
    assert nodes["release"].inputs["version"] == "0.1.0"


def test_minimal_plan(library: Library) -> None:
    plan = template_plan("a word counter", library, shape="minimal")
    validate_plan(plan, capsule_index(library))
    assert layers(plan) == [{"spec"}, {"implement"}, {"tests"}]


def test_template_is_deterministic(library: Library) -> None:
    assert template_plan("a word counter", library) == template_plan("a word counter", library)


@pytest.mark.parametrize(
    ("goal", "slug"),
    [
        ("A command-line tool that counts words", "command-line-tool"),
        ("Build a todo app", "todo-app"),
        ("42 ways to parse CSV", "ways-parse-csv"),
        ("!!!", "project"),
        ("Écrire un convertisseur", "ecrire-un-convertisseur"),
    ],
)
def test_project_slug(goal: str, slug: str) -> None:
    assert project_slug(goal) == slug


def test_empty_goal_is_a_plan_error(library: Library) -> None:
    with pytest.raises(PlanError, match="goal is empty"):
        template_plan("   ", library)


def test_too_short_goal_fails_validation(library: Library) -> None:
    with pytest.raises(PlanError, match="too short"):
        template_plan("ab", library)


def test_library_without_the_capsules_is_a_plan_error() -> None:
    empty = Library()
    with pytest.raises(PlanError, match="unknown capsule 'write-spec'"):
        template_plan("a word counter", empty)
