"""Plan mistakes are caught before any model call, at the node and line that cause them."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.errors import PlanError
from soma.specs.library import Library
from soma.specs.loader import load_plan
from soma.specs.models import Capsule, Plan, PlanNode
from soma.specs.plans import output_references, validate_plan

# Line numbers matter: the edits below address these lines.
PLAN = """\
kind: plan
goal: A word-count command-line tool
nodes:
  - id: spec
    capsule: write-spec
    inputs:
      goal: A word-count command-line tool
  - id: design
    capsule: design-architecture@^1.0
    depends_on: [spec]
    inputs:
      spec: ${spec.outputs.spec}
  - id: build
    capsule: implement-feature
    depends_on: [spec, design]
    inputs:
      feature: R1 counts words
      spec: ${spec.outputs.spec}
      architecture: "${design.outputs.architecture}"
"""


@pytest.fixture(scope="module")
def capsules() -> dict[str, Capsule]:
    return {c.name: c for c in Library.builtin().capsules()}


def edited(*edits: tuple[str, int, str]) -> str:
    lines = PLAN.splitlines()
    for op, number, text in edits:
        if op == "r":
            lines[number - 1] = text
        elif op == "i":
            lines.insert(number - 1, text)
        else:
            del lines[number - 1]
    return "\n".join(lines) + "\n"


def plan_failure(tmp_path: Path, text: str, capsules: dict[str, Capsule]) -> tuple[PlanError, str]:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    plan = load_plan(path)
    with pytest.raises(PlanError) as info:
        validate_plan(plan, capsules)
    return info.value, str(path)


def test_valid_plan(tmp_path: Path, capsules: dict[str, Capsule]) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    validate_plan(load_plan(path), capsules)


@pytest.mark.parametrize(
    ("edits", "line", "field", "needle", "hint"),
    [
        pytest.param(
            [("r", 13, "  - id: spec")],
            13,
            "nodes[2].id",
            "duplicate node id 'spec'",
            None,
            id="duplicate-id",
        ),
        pytest.param(
            [("r", 10, "    depends_on: [spec, biuld]")],
            10,
            "nodes[1].depends_on[1]",
            "unknown node 'biuld'",
            "did you mean 'build'?",
            id="unknown-dependency",
        ),
        pytest.param(
            [("i", 6, "    depends_on: [build]")],
            16,
            "nodes[2].depends_on[0]",
            "dependency cycle: spec → build → spec",
            "DAG",
            id="cycle",
        ),
        pytest.param(
            [("r", 10, "    depends_on: [spec, design]")],
            10,
            "nodes[1].depends_on[1]",
            "dependency cycle: design → design",
            None,
            id="self-cycle",
        ),
        pytest.param(
            [("r", 5, "    capsule: write-spek")],
            5,
            "nodes[0].capsule",
            "unknown capsule 'write-spek'",
            "did you mean 'write-spec'?",
            id="unknown-capsule",
        ),
        pytest.param(
            [("r", 9, "    capsule: design-architecture@^2")],
            9,
            "nodes[1].capsule",
            "matches '^2'",
            "available versions: 1.0.0",
            id="no-matching-version",
        ),
        pytest.param(
            [("r", 7, "      constraints: none")],
            6,
            "nodes[0].inputs",
            "required input 'goal'",
            "goal:",
            id="missing-required-input",
        ),
        pytest.param(
            [("r", 15, "    depends_on: [spec]")],
            19,
            "nodes[2].inputs.architecture",
            "does not depend on it",
            "add 'design' to depends_on",
            id="reference-not-a-dependency",
        ),
        pytest.param(
            [("r", 12, "      spec: ${spec.outputs.specs}")],
            12,
            "nodes[1].inputs.spec",
            "has no output 'specs'",
            "did you mean 'spec'?",
            id="unknown-output-field",
        ),
        pytest.param(
            [("r", 12, "      spec: ${nobody.outputs.spec}")],
            12,
            "nodes[1].inputs.spec",
            "unknown node 'nobody'",
            None,
            id="reference-to-unknown-node",
        ),
        pytest.param(
            [("r", 17, "      feature: [R1]")],
            17,
            "nodes[2].inputs.feature",
            "not of type",
            None,
            id="literal-input-wrong-type",
        ),
    ],
)
def test_invalid_plan_points_at_the_problem(
    tmp_path: Path,
    capsules: dict[str, Capsule],
    edits: list[tuple[str, int, str]],
    line: int,
    field: str,
    needle: str,
    hint: str | None,
) -> None:
    error, file = plan_failure(tmp_path, edited(*edits), capsules)
    assert (error.file, error.line, error.field) == (file, line, field)
    assert needle in error.message
    if hint is not None:
        assert error.hint is not None
        assert hint in error.hint


def test_plan_built_in_code_has_no_file(capsules: dict[str, Capsule]) -> None:
    plan = Plan(
        goal="g",
        nodes=[
            PlanNode(id="a", capsule="write-spec", inputs={"goal": "xyz"}, depends_on=["b"]),
            PlanNode(id="b", capsule="write-spec", inputs={"goal": "xyz"}, depends_on=["a"]),
        ],
    )
    with pytest.raises(PlanError) as info:
        validate_plan(plan, capsules)
    assert (info.value.file, info.value.line, info.value.field) == (
        None,
        None,
        "nodes[1].depends_on[0]",
    )
    assert "a → b → a" in info.value.message


def test_references_nested_in_lists_and_text_are_found() -> None:
    value = {"notes": ["see ${spec.outputs.spec} and ${design.outputs.file_plan}"], "n": 3}
    assert list(output_references(value)) == [
        (("notes", 0), "spec", "spec"),
        (("notes", 0), "design", "file_plan"),
    ]


def test_capsules_keyed_by_ref_resolve_highest_version(capsules: dict[str, Capsule]) -> None:
    old = capsules["write-spec"]
    newer = old.model_copy(update={"version": "1.4.0"})
    pool = {old.ref: old, newer.ref: newer, **{c.ref: c for c in capsules.values()}}
    plan = Plan(
        goal="g", nodes=[PlanNode(id="s", capsule="write-spec@~1.4", inputs={"goal": "xyz"})]
    )
    validate_plan(plan, pool)
