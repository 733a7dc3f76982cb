"""Malformed specs must fail with the exact file, line and field, so users can jump to the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.errors import SpecError
from soma.specs.loader import (
    MAX_SPEC_BYTES,
    load_capsule,
    load_persona,
    load_plan,
    load_spec,
    parse_spec,
)
from soma.specs.models import Capsule, Persona, Plan

# Line numbers matter: the edits below address these lines.
BASE = """\
kind: capsule
name: demo
version: 1.0.0
description: A demo capsule.
persona: developer
inputs:
  type: object
  properties:
    goal: {type: string}
  required: [goal]
outputs:
  type: object
  properties:
    result: {type: string}
  required: [result]
tools:
  - fs.read
  - fs.write
instructions: "Do {{ goal }}."
budget:
  max_steps: 5
artifacts:
  - from: result
    path: out.md
"""


def edited(*edits: tuple[str, int, str]) -> str:
    """Apply ``(op, line, text)`` edits: ``r`` replaces, ``i`` inserts before, ``d`` deletes."""
    lines = BASE.splitlines()
    for op, number, text in edits:
        if op == "r":
            lines[number - 1] = text
        elif op == "i":
            lines.insert(number - 1, text)
        else:
            del lines[number - 1]
    return "\n".join(lines) + "\n"


def failure(tmp_path: Path, text: str | bytes, name: str = "capsule.yaml") -> tuple[SpecError, str]:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value, str(path)


def test_base_document_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "capsule.yaml"
    path.write_text(BASE)
    capsule = load_capsule(path)
    assert isinstance(capsule, Capsule)
    assert capsule.ref == "demo@1.0.0"
    assert [t.name for t in capsule.tools] == ["fs.read", "fs.write"]
    assert capsule.artifacts[0].source == "result"


@pytest.mark.parametrize(
    ("edits", "line", "field", "needle", "hint"),
    [
        pytest.param(
            [("i", 22, "   max_tokens: 9")], 22, None, "invalid YAML", "indentation", id="indent"
        ),
        pytest.param([("r", 21, "\tmax_steps: 5")], 21, None, "invalid YAML", "tab", id="tab"),
        pytest.param(
            [("r", 19, "instructon: 'Do {{ goal }}.'")],
            19,
            "instructon",
            "unknown field 'instructon'",
            "did you mean 'instructions'?",
            id="unknown-field",
        ),
        pytest.param(
            [("d", 4, "")],
            1,
            "description",
            "missing required field 'description'",
            None,
            id="missing-top-level",
        ),
        pytest.param(
            [("d", 24, "")],
            23,
            "artifacts[0].path",
            "missing required field 'path'",
            None,
            id="missing-nested",
        ),
        pytest.param(
            [("r", 21, '  max_steps: "ten"')],
            21,
            "budget.max_steps",
            "valid integer",
            None,
            id="wrong-type-nested",
        ),
        pytest.param(
            [("r", 3, 'version: "1.0"')],
            3,
            "version",
            "not a semantic version",
            "use semantic versions like 1.2.0",
            id="bad-semver",
        ),
        pytest.param(
            [("r", 3, "version: 1.0")],
            3,
            "version",
            "valid string",
            "use semantic versions like 1.2.0",
            id="semver-read-as-float",
        ),
        pytest.param(
            [("r", 2, "name: Demo_App!")],
            2,
            "name",
            "not a valid name",
            "write-spec",
            id="bad-name",
        ),
        pytest.param(
            [("r", 14, "    result: {type: strng}")],
            14,
            "outputs.properties.result.type",
            "not a valid JSON Schema",
            None,
            id="invalid-json-schema",
        ),
        pytest.param(
            [("r", 7, "  type: array")],
            7,
            "inputs.type",
            "must describe an object",
            "type: object",
            id="inputs-not-object",
        ),
        pytest.param(
            [("i", 22, "  max_steps: 6")],
            22,
            "budget.max_steps",
            "duplicate key 'max_steps'",
            "line 21",
            id="duplicate-key",
        ),
        pytest.param(
            [("r", 18, "  - [fs.write]")],
            18,
            "tools[1]",
            "valid dictionary",
            None,
            id="bad-list-item",
        ),
        pytest.param(
            [("r", 18, "  - nme: fs.write")],
            18,
            "tools[1].nme",
            "unknown field 'nme'",
            "did you mean 'name'?",
            id="typo-in-list-item",
        ),
        pytest.param(
            [
                ("i", 25, "knowledge:"),
                ("i", 26, "  - text: ok"),
                ("i", 27, "  - file: a.md"),
                ("i", 28, "    text: inline"),
            ],
            27,
            "knowledge[1]",
            "exactly one of 'file', 'text' or 'memory'",
            None,
            id="knowledge-two-sources",
        ),
        pytest.param(
            [("r", 23, "  - from: reslt")],
            23,
            "artifacts[0].from",
            "not an output field",
            "did you mean 'result'?",
            id="artifact-unknown-output",
        ),
        pytest.param(
            [("r", 17, "  - [fs.read")],
            19,
            None,
            "invalid YAML",
            "starts on line 17",
            id="unclosed-flow-sequence",
        ),
        pytest.param(
            [("r", 1, "kind: capsul")],
            1,
            "kind",
            "unknown kind 'capsul'",
            "did you mean 'capsule'?",
            id="unknown-kind",
        ),
        pytest.param(
            [
                ("i", 25, "evals:"),
                ("i", 26, "  - name: smoke"),
                ("i", 27, "    input: {goal: 3}"),
                ("i", 28, "    checks: [{kind: schema}]"),
            ],
            27,
            "evals[0].input.goal",
            "does not match the capsule's inputs",
            None,
            id="eval-input-against-schema",
        ),
        pytest.param(
            [
                ("i", 25, "evals:"),
                ("i", 26, "  - name: smoke"),
                ("i", 27, "    input: {goal: x}"),
                ("i", 28, "    checks:"),
                ("i", 29, "      - {kind: contains, field: reslt}"),
            ],
            29,
            "evals[0].checks[0].field",
            "naming an output field",
            "did you mean 'result'?",
            id="eval-check-unknown-field",
        ),
    ],
)
def test_malformed_capsule_points_at_the_problem(
    tmp_path: Path,
    edits: list[tuple[str, int, str]],
    line: int,
    field: str | None,
    needle: str,
    hint: str | None,
) -> None:
    error, file = failure(tmp_path, edited(*edits))
    assert (error.file, error.line, error.field) == (file, line, field)
    assert needle in error.message
    if hint is not None:
        assert error.hint is not None
        assert hint in error.hint


def test_empty_file(tmp_path: Path) -> None:
    error, file = failure(tmp_path, "")
    assert (error.file, error.line, error.field) == (file, 1, None)
    assert "empty" in error.message


def test_comment_only_file_is_empty(tmp_path: Path) -> None:
    error, file = failure(tmp_path, "# nothing yet\n")
    assert (error.file, error.line, error.field) == (file, 1, None)
    assert "empty" in error.message


def test_top_level_list(tmp_path: Path) -> None:
    error, file = failure(tmp_path, "\n- name: demo\n- name: other\n")
    assert (error.file, error.line, error.field) == (file, 2, None)
    assert "mapping" in error.message
    assert "list" in error.message


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    error, file = failure(tmp_path, "# " + "x" * MAX_SPEC_BYTES + "\n")
    assert (error.file, error.line, error.field) == (file, None, None)
    assert "larger than" in error.message


def test_non_utf8_file(tmp_path: Path) -> None:
    error, file = failure(tmp_path, b"kind: capsule\nname: \xff\n")
    assert (error.file, error.line, error.field) == (file, 2, None)


def test_duplicate_key_at_top_level(tmp_path: Path) -> None:
    error, file = failure(tmp_path, edited(("i", 3, "name: again")))
    assert (error.file, error.line, error.field) == (file, 3, "name")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert info.value.file == str(tmp_path / "nope.yaml")


def test_kind_argument_conflicts_with_document(tmp_path: Path) -> None:
    path = tmp_path / "thing.yaml"
    path.write_text(BASE)
    with pytest.raises(SpecError) as info:
        load_persona(path)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 1, "kind")


def test_kind_from_file_name_and_directory(tmp_path: Path) -> None:
    persona = "name: tester\nversion: 1.0.0\nrole: tester\ngoal: test things\n"
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "tester.yaml").write_text(persona)
    (tmp_path / "tester.persona.yaml").write_text(persona)
    assert isinstance(load_spec(tmp_path / "personas" / "tester.yaml"), Persona)
    assert isinstance(load_spec(tmp_path / "tester.persona.yaml"), Persona)
    (tmp_path / "mystery.yaml").write_text(persona)
    with pytest.raises(SpecError, match="cannot tell what kind"):
        load_spec(tmp_path / "mystery.yaml")


def test_capsule_directory_loads_its_capsule_yaml(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "capsule.yaml").write_text(BASE)
    assert load_capsule(tmp_path / "demo").name == "demo"


def test_unchanged_file_is_loaded_once(tmp_path: Path) -> None:
    path = tmp_path / "capsule.yaml"
    path.write_text(BASE)
    assert load_capsule(path) is load_capsule(path)
    path.write_text(BASE.replace("A demo capsule.", "Changed, and longer."))
    assert load_capsule(path).description == "Changed, and longer."


def test_parse_spec_from_string() -> None:
    spec = parse_spec(BASE, "capsule")
    assert isinstance(spec, Capsule)
    with pytest.raises(SpecError) as info:
        parse_spec(edited(("r", 21, '  max_steps: "ten"')), "capsule", source="inline")
    assert (info.value.file, info.value.line, info.value.field) == (
        "inline",
        21,
        "budget.max_steps",
    )
    assert str(info.value).startswith("inline:21 at budget.max_steps:")


def test_persona_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: persona\nname: dev\nversion: 1.0.0\nrole: developer\ngoal: code\n"
        "model:\n  prefer: [local]\n  temperature: 5\n"
    )
    with pytest.raises(SpecError) as info:
        load_persona(path)
    assert (info.value.line, info.value.field) == (8, "model.temperature")


def test_yaml_anchors_and_merge_keys_are_supported(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "kind: plan\ngoal: ship it\nnodes:\n"
        "  - &base {id: spec, capsule: write-spec, inputs: {goal: x}}\n"
        "  - <<: *base\n    id: spec2\n"
    )
    plan = load_plan(path)
    assert isinstance(plan, Plan)
    assert [n.id for n in plan.nodes] == ["spec", "spec2"]
    assert plan.nodes[1].capsule == "write-spec"


def test_several_problems_are_counted(tmp_path: Path) -> None:
    error, _ = failure(
        tmp_path, edited(("r", 21, '  max_steps: "ten"'), ("r", 3, 'version: "1.0"'))
    )
    assert (error.line, error.field) == (3, "version")
    assert "1 more problem(s), at budget.max_steps (line 21)" in error.message
