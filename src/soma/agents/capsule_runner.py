"""Runs one capsule with one persona in a workspace: the unit of work of every project.

It binds the pure agent loop to real effects (a model, the tool registry in a sandbox) and ends
every run, successful or not, in a commit authored by the agent, so the workspace history tells
who did what.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from soma.agents.driver import EventSink, drive
from soma.agents.loop import AgentLoop, AgentTask, ToolOutcome
from soma.agents.prompts import system_prompt, user_prompt
from soma.agents.untrusted import wrap_untrusted
from soma.errors import SpecError, UnknownTool
from soma.models.protocol import Model
from soma.models.types import ToolCall, Usage
from soma.specs.models import Capsule, Persona
from soma.tools import ToolContext, ToolRegistry
from soma.tools.sandbox import Sandbox
from soma.workspace import AgentIdentity, Workspace


class CapsuleRunResult(BaseModel):
    run_id: str
    capsule: str
    persona: str
    model: str
    ok: bool
    output: Any = None
    error: str | None = None
    steps: int
    usage: Usage
    artifacts: list[str] = []
    commit: str | None = None


def check_inputs(capsule: Capsule, inputs: Mapping[str, Any]) -> None:
    """Reject inputs that do not match the capsule's input schema, naming the field."""
    validator = Draft202012Validator(capsule.inputs)
    error = next(iter(validator.iter_errors(dict(inputs))), None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        raise SpecError(
            error.message,
            field=f"inputs.{path}" if path else "inputs",
            hint=f"capsule {capsule.ref} expects inputs matching {json.dumps(capsule.inputs)}",
        )


KNOWLEDGE_FILE_LIMIT = 16_384


def gather_knowledge(capsule: Capsule, workspace: Workspace) -> list[tuple[str, str]]:
    """Inline texts and workspace files named by the capsule, as (title, text) for the prompt.

    Files are project files (``docs/SPEC.md`` written by an earlier capsule), read through the
    workspace so a capsule cannot name a path outside it; a file not written yet is said to be
    missing rather than failing the run, since plans may run a capsule before its inputs exist.
    Memory queries are answered by the memory gateway and are skipped here.
    """
    gathered: list[tuple[str, str]] = []
    for item in capsule.knowledge:
        if item.text is not None:
            gathered.append(("note", item.text))
        elif item.file is not None:
            path = workspace.resolve(item.file)
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")[:KNOWLEDGE_FILE_LIMIT]
            else:
                text = "(this file does not exist in the workspace yet)"
            gathered.append((item.file, wrap_untrusted(item.file, text)))
    return gathered


def allowed_tools(capsule: Capsule, persona: Persona, registry: ToolRegistry) -> list[str]:
    """The capsule's tools that the persona may use; a tool nobody registered is an error."""
    known = set(registry.names())
    names: list[str] = []
    for grant in capsule.tools:
        if grant.name not in known:
            raise UnknownTool(
                f"capsule {capsule.ref} uses tool '{grant.name}', which is not registered",
                hint=f"registered tools: {', '.join(sorted(known))}",
            )
        if any(fnmatch.fnmatchcase(grant.name, pattern) for pattern in persona.tools):
            names.append(grant.name)
    return names


def build_task(
    capsule: Capsule,
    persona: Persona,
    inputs: Mapping[str, Any],
    *,
    registry: ToolRegistry,
    workspace: Workspace,
    run_id: str,
    feedback: str | None = None,
    recalled: Sequence[tuple[str, str]] = (),
) -> AgentTask:
    """Everything the agent loop needs, checked: inputs, tools the persona may use, prompts.

    ``feedback`` (a reviewer's comment on an earlier attempt, or why it failed) is appended to
    the task so the next attempt knows what went wrong; ``recalled`` is what memory adds
    (:func:`soma.memory.recall.recall_for_run`).
    """
    check_inputs(capsule, inputs)
    tool_names = allowed_tools(capsule, persona, registry)
    knowledge = [*gather_knowledge(capsule, workspace), *recalled]
    prompt = user_prompt(capsule, inputs, knowledge)
    if feedback:
        prompt += f"\n\nYour previous attempt was not accepted:\n{feedback}"
    return AgentTask(
        run_id=run_id,
        system_prompt=system_prompt(persona, capsule, tool_names),
        user_prompt=prompt,
        tools=tuple(registry.specs(tool_names)),
        output_schema=capsule.outputs,
        max_steps=capsule.budget.max_steps,
        max_tokens=capsule.budget.max_tokens,
        temperature=persona.model.temperature,
    )


async def execute_tool_call(
    call: ToolCall, task: AgentTask, registry: ToolRegistry, context: ToolContext
) -> ToolOutcome:
    """Run one tool call the model asked for, refusing tools the task does not offer.

    Whatever the tool returns, ok or not (a failing command's output is as untrusted as a
    file's), reaches the model inside an ``<untrusted>`` envelope; see
    :mod:`soma.agents.untrusted`. The refusal below is the runtime's own text and stays plain.
    """
    offered = [spec.name for spec in task.tools]
    if call.name not in offered:
        return ToolOutcome(
            call_id=call.id,
            name=call.name,
            ok=False,
            output=f"tool '{call.name}' is not available to you; use one of: "
            + (", ".join(offered) or "(none)"),
        )
    result = await registry.call(call.name, call.arguments, context)
    return ToolOutcome(
        call_id=call.id,
        name=call.name,
        ok=result.ok,
        output=wrap_untrusted(call.name, result.output),
    )


def finish_run(
    capsule: Capsule,
    workspace: Workspace,
    identity: AgentIdentity,
    *,
    ok: bool,
    output: Any,
    error: str | None,
) -> tuple[list[str], str | None]:
    """Write the artifacts of a successful run, then commit as the agent: (artifacts, sha)."""
    artifacts = write_artifacts(capsule, workspace, output) if ok else []
    status = "done" if ok else f"failed: {error}"
    message = f"{capsule.name}: {status}\n\nSoma-Capsule: {capsule.ref}\n"
    return artifacts, workspace.commit(message, identity)


async def run_capsule(
    capsule: Capsule,
    persona: Persona,
    inputs: Mapping[str, Any],
    *,
    model: Model,
    registry: ToolRegistry,
    workspace: Workspace,
    sandbox: Sandbox,
    run_id: str | None = None,
    on_event: EventSink | None = None,
    tool_timeout_s: float = 60.0,
    tool_memory_mb: int = 1024,
    recalled: Sequence[tuple[str, str]] = (),
) -> CapsuleRunResult:
    """Run a capsule in-process (no durability): the CLI's single-agent path and the tests'.
    ``recalled`` is what memory adds to the prompt (lessons, answers to memory queries)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    task = build_task(
        capsule,
        persona,
        inputs,
        registry=registry,
        workspace=workspace,
        run_id=run_id,
        recalled=recalled,
    )
    identity = AgentIdentity(persona=persona.name, capsule=capsule.name, run_id=run_id)
    context = ToolContext(
        workspace=workspace,
        sandbox=sandbox,
        agent=identity,
        timeout_s=tool_timeout_s,
        memory_mb=tool_memory_mb,
    )

    async def execute(call: ToolCall) -> ToolOutcome:
        return await execute_tool_call(call, task, registry, context)

    result = await drive(AgentLoop(task), model, execute, on_event=on_event)
    artifacts, commit = finish_run(
        capsule, workspace, identity, ok=result.ok, output=result.output, error=result.error
    )
    return CapsuleRunResult(
        run_id=run_id,
        capsule=capsule.ref,
        persona=persona.name,
        model=model.name,
        ok=result.ok,
        output=result.output,
        error=result.error,
        steps=result.steps,
        usage=result.usage,
        artifacts=artifacts,
        commit=commit,
    )


def write_artifacts(capsule: Capsule, workspace: Workspace, output: Any) -> list[str]:
    """Write declared output fields to their workspace files; returns the paths written."""
    written: list[str] = []
    output = output if isinstance(output, dict) else {}
    for artifact in capsule.artifacts:
        if artifact.source not in output:
            continue
        value = output[artifact.source]
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        target = workspace.resolve(artifact.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        written.append(artifact.path)
    return written
