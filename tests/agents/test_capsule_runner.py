"""A capsule run end to end with a scripted model: real tools, real sandbox, real git workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from soma.agents.capsule_runner import CapsuleRunResult, run_capsule
from soma.errors import SpecError, UnknownTool
from soma.models.scripted import ScriptedModel, final, tool_call
from soma.specs.library import Library
from soma.specs.models import Capsule
from soma.tools import ToolRegistry, default_registry
from soma.tools.sandbox import make_sandbox
from soma.workspace import Workspace

SPEC_TEXT = "# Todo CLI\n\n## Requirements\n\nR1. `todo add` stores an item.\n" + "x" * 200


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path, "todo-cli")


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return default_registry()


async def run(
    library: Library,
    workspace: Workspace,
    registry: ToolRegistry,
    model: ScriptedModel,
    capsule: str = "write-spec",
    inputs: dict[str, object] | None = None,
) -> CapsuleRunResult:
    spec = library.capsule(capsule)
    return await run_capsule(
        spec,
        library.persona(spec.persona),
        inputs if inputs is not None else {"goal": "Build a todo-list CLI in Python"},
        model=model,
        registry=registry,
        workspace=workspace,
        sandbox=make_sandbox("auto"),
        run_id="run-42",
    )


async def test_run_writes_artifact_and_commits_as_the_agent(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    model = ScriptedModel(
        [tool_call("fs.list", path="."), final({"title": "Todo CLI", "spec": SPEC_TEXT})]
    )
    result = await run(library, workspace, registry, model)

    assert result.ok, result.error
    assert result.artifacts == ["docs/SPEC.md"]
    assert (workspace.path / "docs/SPEC.md").read_text() == SPEC_TEXT + "\n"
    head = workspace.log(1)[0]
    assert head.sha == result.commit
    assert head.author_name == "product-manager (write-spec)"
    assert head.author_email == "product-manager@agents.soma.local"
    assert "Soma-Capsule: write-spec@1.0.0" in head.message
    assert "Soma-Run-Id: run-42" in head.message
    first = model.requests[0]
    assert "product manager" in (first.messages[0].content or "").lower()
    assert "Build a todo-list CLI in Python" in (first.messages[1].content or "")
    assert {t.name for t in first.tools} == {"fs.read", "fs.list", "fs.write"}
    assert first.output is not None
    assert first.output.json_schema["required"] == ["title", "spec"]


async def test_agent_writes_files_through_the_sandboxed_shell(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    model = ScriptedModel(
        [
            tool_call("shell.exec", command="mkdir -p src && echo 'print(1)' > src/app.py"),
            final({"summary": "added app", "files_changed": ["src/app.py"]}),
        ]
    )
    capsule = library.capsule("implement-feature")
    inputs = dict.fromkeys(capsule.inputs.get("required", []), "add a todo item")
    result = await run(library, workspace, registry, model, "implement-feature", inputs)

    shell_answer = model.requests[1].messages[-1].content or ""
    assert "exit code: 0" in shell_answer.lower() or "exit_code" in shell_answer.lower()
    assert (workspace.path / "src/app.py").read_text() == "print(1)\n"
    assert workspace.log(1)[0].author_name == "developer (implement-feature)"
    assert result.commit == workspace.head()


async def test_tool_outside_the_capsule_grant_is_refused_to_the_agent(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    model = ScriptedModel(
        [
            tool_call("shell.exec", command="echo pwned > owned.txt"),
            final({"title": "Todo", "spec": SPEC_TEXT}),
        ]
    )
    result = await run(library, workspace, registry, model)

    assert result.ok
    refusal = model.requests[1].messages[-1].content or ""
    assert "'shell.exec' is not available" in refusal
    assert not (workspace.path / "owned.txt").exists()


async def test_failed_run_still_commits_with_the_reason(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    model = ScriptedModel([final({"title": "no spec"})] * 3)
    result = await run(library, workspace, registry, model)

    assert not result.ok
    head = workspace.log(1)[0]
    assert head.message.startswith("write-spec: failed: final answer still invalid")
    assert not (workspace.path / "docs/SPEC.md").exists()


async def test_inputs_are_checked_against_the_capsule_schema(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    with pytest.raises(SpecError) as excinfo:
        await run(library, workspace, registry, ScriptedModel([]), inputs={"goal": 42})
    assert excinfo.value.field == "inputs.goal"
    assert "is not of type 'string'" in str(excinfo.value)


async def test_knowledge_files_and_notes_reach_the_prompt(
    library: Library, workspace: Workspace, registry: ToolRegistry
) -> None:
    base = library.capsule("write-spec")
    capsule = Capsule.model_validate(
        {
            **base.model_dump(by_alias=True),
            "knowledge": [{"file": "docs/NOTES.md"}, {"text": "Prefer argparse."}],
        }
    )
    (workspace.path / "docs").mkdir()
    (workspace.path / "docs/NOTES.md").write_text("Users want colour output.")
    model = ScriptedModel([final({"title": "Todo", "spec": SPEC_TEXT})])
    await run_capsule(
        capsule,
        library.persona(capsule.persona),
        {"goal": "todo app"},
        model=model,
        registry=registry,
        workspace=workspace,
        sandbox=make_sandbox("auto"),
    )
    prompt = model.requests[0].messages[1].content or ""
    assert "Users want colour output." in prompt
    assert "Prefer argparse." in prompt


async def test_capsule_naming_an_unregistered_tool_fails_clearly(
    library: Library, workspace: Workspace
) -> None:
    with pytest.raises(UnknownTool, match="not registered"):
        await run(library, workspace, ToolRegistry([]), ScriptedModel([]))
