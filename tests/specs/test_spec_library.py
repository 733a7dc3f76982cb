"""The built-in catalogue is the product's default team: it must load, cohere and be testable."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from soma.errors import NotFound, SpecError
from soma.specs.library import Library, builtin_dir
from soma.specs.loader import spec_json_schema
from soma.specs.versions import parse_range

LIBRARY_ROOT = Path(str(builtin_dir()))
EXPECTED_CAPSULES = {
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
}
EXPECTED_PERSONAS = {
    "product-manager",
    "architect",
    "developer",
    "qa-engineer",
    "code-reviewer",
    "technical-writer",
    "devops-engineer",
    "security-reviewer",
}
PLACEHOLDER = "{{ "


def builtin_files() -> list[Path]:
    return sorted(LIBRARY_ROOT.rglob("*.yaml"))


def test_builtin_library_is_consistent() -> None:
    library = Library.builtin()
    assert library.validate() == []
    assert Library.builtin() is library  # loaded once per process


def test_builtin_catalogue_is_complete() -> None:
    library = Library.builtin()
    capsules = library.capsules()
    assert len(capsules) >= 10
    assert {c.name for c in capsules} >= EXPECTED_CAPSULES
    assert len(library.personas()) >= 8
    assert {p.name for p in library.personas()} >= EXPECTED_PERSONAS
    assert library.constitution().name == "default"
    assert [c.name for c in capsules] == sorted(c.name for c in capsules)


@pytest.mark.parametrize("name", sorted(EXPECTED_CAPSULES))
def test_builtin_capsule_is_runnable_as_designed(name: str) -> None:
    capsule = Library.builtin().capsule(name)
    assert capsule.version == "1.0.0"
    assert capsule.evals, "every built-in capsule needs an eval"
    assert capsule.artifacts, "weak models without tools must still leave files"
    outputs = capsule.outputs
    assert outputs["type"] == "object"
    assert outputs["required"]
    for field in outputs["required"]:
        assert outputs["properties"][field]["type"] == "string"
    for required in capsule.inputs.get("required", []):
        assert f"{{{{ {required} }}}}" in capsule.instructions, required
    for evaluation in capsule.evals:
        jsonschema.validate(evaluation.input, capsule.inputs)


def test_reviewers_are_read_only() -> None:
    library = Library.builtin()
    for name in ("code-reviewer", "security-reviewer"):
        tools = library.persona(name).tools
        assert not any(t.startswith(("fs.write", "fs.*", "shell", "git.*")) for t in tools)
    assert "shell.exec" in library.persona("developer").tools
    assert all(p.model.prefer == ["local"] for p in library.personas())


def test_default_constitution_guards_the_dangerous_actions() -> None:
    constitution = Library.builtin().constitution()
    effects = {rule.id: rule.effect for rule in constitution.rules}
    assert effects["deny-delete-root"] == "deny"
    assert effects["approve-git-push"] == "require_approval"
    assert effects["approve-merge"] == "require_approval"
    assert "redact" in effects.values()
    assert {"honesty", "least-privilege", "workspace-confinement", "human-oversight"} <= {
        p.id for p in constitution.principles
    }
    assert all(rule.reason.strip() for rule in constitution.rules)


@pytest.mark.parametrize("path", builtin_files(), ids=lambda p: str(p.relative_to(LIBRARY_ROOT)))
def test_builtin_file_matches_the_exported_json_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    jsonschema.validate(data, spec_json_schema(data["kind"]))


@pytest.mark.parametrize("kind", ["capsule", "persona", "constitution", "plan"])
def test_exported_json_schema_is_valid(kind: str) -> None:
    schema = spec_json_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"{kind}.schema.json")
    assert kind in schema["title"]
    json.dumps(schema)  # serialisable for editors
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": kind, "no_such_field": 1}, schema)


def test_unknown_kind_has_no_schema() -> None:
    with pytest.raises(SpecError, match="unknown spec kind"):
        spec_json_schema("widget")


# --- user libraries and version ranges -----------------------------------------------------------

CAPSULE = """\
kind: capsule
name: {name}
version: {version}
description: Version {version}.
persona: {persona}
tools: [{tool}]
instructions: "Say hello to {{{{ who }}}}."
inputs:
  type: object
  properties: {{who: {{type: string}}}}
"""
PERSONA = "name: greeter\nversion: 1.0.0\nrole: greeter\ngoal: greet\ntools: [fs.read]\n"


def make_library(
    root: Path, versions: list[str], persona: str = "greeter", tool: str = "fs.read"
) -> Path:
    (root / "personas").mkdir(parents=True, exist_ok=True)
    (root / "personas" / "greeter.yaml").write_text(PERSONA)
    for version in versions:
        folder = root / "capsules" / f"hello-{version}"
        folder.mkdir(parents=True)
        (folder / "capsule.yaml").write_text(
            CAPSULE.format(name="hello", version=version, persona=persona, tool=tool)
        )
        (folder / "prompt.md").write_text("extra files in a capsule directory are ignored")
    return root


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("hello", "2.1.0"),
        ("hello@^1.0", "1.10.0"),
        ("hello@~1.2", "1.2.3"),
        ("hello@>=1.0,<2", "1.10.0"),
        ("hello@>=1.0, <1.10", "1.2.3"),
        ("hello@1.2.0", "1.2.0"),
        ("hello@1", "1.10.0"),
        ("hello@*", "2.1.0"),
        ("hello@^2", "2.1.0"),
        ("hello@<1.2", "1.0.0"),
    ],
)
def test_version_range_picks_the_highest_match(tmp_path: Path, ref: str, expected: str) -> None:
    library = Library.from_dirs(
        make_library(tmp_path, ["1.0.0", "1.2.0", "1.2.3", "1.10.0", "2.0.0", "2.1.0"])
    )
    assert library.capsule(ref).version == expected


def test_capsules_lists_latest_or_all_versions(tmp_path: Path) -> None:
    library = Library.from_dirs(make_library(tmp_path, ["1.0.0", "1.10.0", "1.9.0"]))
    assert [c.version for c in library.capsules()] == ["1.10.0"]
    assert [c.version for c in library.capsules(all_versions=True)] == ["1.0.0", "1.9.0", "1.10.0"]


def test_no_matching_version_lists_available(tmp_path: Path) -> None:
    library = Library.from_dirs(make_library(tmp_path, ["1.0.0", "1.2.0"]))
    with pytest.raises(NotFound) as info:
        library.capsule("hello@^3")
    assert info.value.hint == "available versions: 1.0.0, 1.2.0"


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(NotFound) as info:
        Library.builtin().capsule("write-spek")
    assert info.value.hint is not None
    assert "'write-spec'" in info.value.hint
    with pytest.raises(NotFound):
        Library.builtin().persona("wizard")
    with pytest.raises(NotFound):
        Library.builtin().constitution("strict")


def test_bad_range_is_a_spec_error(tmp_path: Path) -> None:
    library = Library.from_dirs(make_library(tmp_path, ["1.0.0"]))
    with pytest.raises(SpecError, match="invalid version range"):
        library.capsule("hello@banana")


def test_extra_directory_extends_and_overrides_builtin(tmp_path: Path) -> None:
    make_library(tmp_path, ["1.0.0"])
    override = tmp_path / "capsules" / "write-spec"
    override.mkdir(parents=True)
    text = (LIBRARY_ROOT / "capsules" / "write-spec" / "capsule.yaml").read_text()
    (override / "capsule.yaml").write_text(text.replace("review: auto", "review: human"))
    library = Library.builtin(tmp_path)
    assert library.capsule("hello").version == "1.0.0"
    assert library.capsule("write-spec").review == "human"
    assert Library.builtin().capsule("write-spec").review == "auto"
    same = Library.from_dirs(tmp_path, builtin=True)
    assert same.capsule("write-spec").review == "human"
    assert same.capsule("review-code").name == "review-code"


def test_same_version_twice_in_one_directory_is_an_error(tmp_path: Path) -> None:
    make_library(tmp_path, ["1.0.0"])
    (tmp_path / "capsules" / "copy").mkdir()
    (tmp_path / "capsules" / "copy" / "capsule.yaml").write_text(
        CAPSULE.format(name="hello", version="1.0.0", persona="greeter", tool="fs.read")
    )
    with pytest.raises(SpecError, match="defined twice"):
        Library.from_dirs(tmp_path)


def test_invalid_file_in_library_fails_with_its_location(tmp_path: Path) -> None:
    make_library(tmp_path, [])
    (tmp_path / "personas" / "broken.yaml").write_text("name: broken\nversion: one\n")
    with pytest.raises(SpecError) as info:
        Library.from_dirs(tmp_path)
    assert (info.value.file, info.value.line) == (str(tmp_path / "personas" / "broken.yaml"), 2)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        Library.from_dirs(tmp_path / "absent")


def test_validate_reports_cross_spec_problems(tmp_path: Path) -> None:
    make_library(tmp_path / "a", ["1.0.0"], persona="ghost")
    make_library(tmp_path / "b", ["1.0.0"], tool="shell.exec")
    (tmp_path / "c" / "capsules").mkdir(parents=True)
    make_library(tmp_path / "c", [])
    (tmp_path / "c" / "capsules" / "hole.yaml").write_text(
        "kind: capsule\nname: hole\nversion: 1.0.0\ndescription: d\npersona: greeter\n"
        "instructions: 'Use {{ missing }}'\n"
    )
    [ghost] = Library.from_dirs(tmp_path / "a").validate()
    assert "persona 'ghost' cannot be resolved" in ghost
    [tool] = Library.from_dirs(tmp_path / "b").validate()
    assert "tool 'shell.exec' is not allowed for persona 'greeter'" in tool
    [hole] = Library.from_dirs(tmp_path / "c").validate()
    assert "no input 'missing'" in hole
    assert "hole.yaml" in hole


def test_version_range_parsing_edge_cases() -> None:
    assert parse_range("^0.2").matches("0.2.9")
    assert not parse_range("^0.2").matches("0.3.0")
    assert not parse_range("^0.0.3").matches("0.0.4")
    assert parse_range("~1").matches("1.9.0")
    assert parse_range("!=1.0.0").matches("1.0.1")
    assert not parse_range(">1.2").matches("1.2.9")
    assert parse_range("1.x").matches("1.5.0")
    for bad in ("banana", "^", ">=1,<", "1.0.0-"):
        with pytest.raises(SpecError):
            parse_range(bad)
