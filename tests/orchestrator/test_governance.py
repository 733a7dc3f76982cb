"""The constitution inside a real Temporal run: deny, approval gates, redaction, critique, audit."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from soma.identity.secret import load_secret_key
from soma.models.function import FunctionModel
from soma.models.synthetic import value_for
from soma.models.types import Message, ModelRequest, ToolCall
from soma.orchestrator.projects import send_review, start_project
from soma.orchestrator.types import ProjectParams, ProjectState, ReviewDecision
from soma.secrets import Vault
from soma.specs.models import Plan, PlanNode
from soma.workspace import Workspace

from .conftest import Harness
from .test_project_workflow import wait_for_node

pytestmark = pytest.mark.slow

SPEC = "# Todo\n\nR1. `todo add` stores an item."
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def developer_running(command: str, seen: list[ModelRequest]) -> FunctionModel:
    """implement-feature's agent runs ``command`` once, then answers validly."""

    def reply(request: ModelRequest) -> Message:
        seen.append(request)
        if not any(m.role == "tool" for m in request.messages) and request.tools:
            call = ToolCall(id="c1", name="shell.exec", arguments={"command": command})
            return Message.assistant(tool_calls=[call])
        schema = request.output.json_schema if request.output else {"type": "string"}
        return Message.assistant(json.dumps(value_for(schema, "answer")))

    return FunctionModel(reply)


def implement_plan() -> Plan:
    return Plan(
        goal="todo",
        nodes=[
            PlanNode(
                id="impl",
                capsule="implement-feature",
                inputs={"feature": "add items", "spec": SPEC},
            )
        ],
    )


async def start(harness: Harness, plan: Plan) -> tuple[str, asyncio.Future[ProjectState]]:
    project_id = f"g-{uuid.uuid4().hex[:8]}"
    harness.store.create_project(project_id=project_id, goal=plan.goal)
    params = ProjectParams(project_id=project_id, goal=plan.goal, plan=plan, model="m")
    handle = await start_project(harness.client, harness.settings, params)
    return project_id, asyncio.ensure_future(handle.result())


def tool_answers(seen: list[ModelRequest]) -> list[str]:
    return [m.content or "" for r in seen for m in r.messages if m.role == "tool"]


async def test_denied_command_never_reaches_the_sandbox(harness: Harness) -> None:
    seen: list[ModelRequest] = []
    harness.models["m"] = developer_running("rm -rf / ; touch reached-the-sandbox", seen)
    project_id, result = await start(harness, implement_plan())
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded"
    answers = tool_answers(seen)
    assert any("refused by the constitution" in a and "deny-delete-root" in a for a in answers)
    workspace = Workspace.open(harness.settings.workspaces_dir, project_id)
    assert not (workspace.path / "reached-the-sandbox").exists()
    denied = [r for r in harness.store.list_audit(project_id=project_id) if r.effect == "deny"]
    assert [(r.tool, r.rule_id) for r in denied] == [("shell.exec", "deny-delete-root")]
    assert harness.store.verify_audit().ok


async def test_approval_gated_tool_waits_for_the_signal(harness: Harness) -> None:
    seen: list[ModelRequest] = []
    harness.models["m"] = developer_running("git push origin main; touch pushed", seen)
    project_id, result = await start(harness, implement_plan())

    await wait_for_node(harness, project_id, "impl", "waiting_review")
    workspace = Workspace.open(harness.settings.workspaces_dir, project_id)
    assert not (workspace.path / "pushed").exists(), "ran before approval"
    (gate,) = harness.store.list_reviews(status="pending", project_id=project_id)
    events = harness.store.list_events(project_id)
    assert any("asks to run shell.exec" in e.message for e in events)
    await send_review(
        harness.client,
        project_id,
        "impl",
        ReviewDecision(approved=True, comment="ok to push", round=gate.attempt),
    )
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded"
    assert (workspace.path / "pushed").exists()
    effects = [r.effect for r in harness.store.list_audit(project_id=project_id)]
    assert "require_approval" in effects


async def test_rejected_approval_is_a_refusal_the_agent_sees(harness: Harness) -> None:
    seen: list[ModelRequest] = []
    harness.models["m"] = developer_running("git push origin main; touch pushed", seen)
    project_id, result = await start(harness, implement_plan())
    await wait_for_node(harness, project_id, "impl", "waiting_review")
    await send_review(
        harness.client, project_id, "impl", ReviewDecision(approved=False, comment="not yet")
    )
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded"
    assert any("a reviewer refused this call: not yet" in a for a in tool_answers(seen))
    workspace = Workspace.open(harness.settings.workspaces_dir, project_id)
    assert not (workspace.path / "pushed").exists()


async def test_secrets_in_model_output_are_masked_before_storage(harness: Harness) -> None:
    def reply(request: ModelRequest) -> Message:
        schema = request.output.json_schema if request.output else {"type": "string"}
        answer = value_for(schema, "answer")
        if isinstance(answer, dict) and "readme" in answer:
            answer["readme"] = (
                f"Configure with AWS key {AWS_KEY}, mail ops@example.com. " + (answer["readme"])
            )
        return Message.assistant(json.dumps(answer))

    harness.models["m"] = FunctionModel(reply)
    plan = Plan(
        goal="docs", nodes=[PlanNode(id="docs", capsule="write-docs", inputs={"spec": SPEC})]
    )
    project_id, result = await start(harness, plan)
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded", state.error
    node = harness.store.list_nodes(project_id)[0]
    stored = json.dumps(node.output)
    assert AWS_KEY not in stored
    assert "[REDACTED" in stored
    workspace = Workspace.open(harness.settings.workspaces_dir, project_id)
    artifacts = "".join(p.read_text() for p in workspace.path.rglob("*.md"))
    assert AWS_KEY not in artifacts
    events = " ".join(e.message for e in harness.store.list_events(project_id))
    assert AWS_KEY not in events


async def test_critique_makes_the_agent_revise(harness: Harness) -> None:
    critic_calls: list[str] = []

    def reply(request: ModelRequest) -> Message:
        system = request.messages[0].content or ""
        schema = request.output.json_schema if request.output else {"type": "string"}
        if system.startswith("You are a critic"):
            critic_calls.append(request.messages[1].content or "")
            ok = len(critic_calls) > 1
            verdict = {"ok": ok, "critique": "" if ok else "honesty: state your assumptions"}
            return Message.assistant(json.dumps(verdict))
        answer = value_for(schema, "answer")
        revised = any("asks for a revision" in (m.content or "") for m in request.messages)
        if isinstance(answer, dict) and "spec" in answer:
            answer["spec"] = ("Revised with assumptions. " if revised else "") + answer["spec"]
        return Message.assistant(json.dumps(answer))

    harness.models["m"] = FunctionModel(reply)
    plan = Plan(
        goal="todo", nodes=[PlanNode(id="spec", capsule="write-spec", inputs={"goal": "todo app"})]
    )
    project_id, result = await start(harness, plan)
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded", state.error
    assert len(critic_calls) == 2
    assert "Revised with assumptions." in critic_calls[1]
    kinds = [e.kind for e in harness.store.list_events(project_id)]
    assert kinds.count("critique_revise") == 1
    assert kinds.count("critique_ok") == 1
    node = harness.store.list_nodes(project_id)[0]
    assert node.output is not None
    assert node.output["spec"].startswith("Revised with assumptions.")


async def test_tenant_secret_values_never_reach_the_model(harness: Harness) -> None:
    """A command that prints a stored secret: the agent sees it masked, in the default tenant's
    project, because every tool output passes the tenant's secret values through ``mask``."""
    secret = "sv-" + uuid.uuid4().hex
    vault = Vault(harness.store, load_secret_key(harness.settings))
    vault.set("default", "deploy.token", secret, actor="test")
    seen: list[ModelRequest] = []
    # No "token=" in front: the always-on redaction of secret-looking assignments would mask it
    # anyway; a bare value is only known to be secret because the vault holds it.
    harness.models["m"] = developer_running(f"echo the value is {secret}", seen)
    project_id, result = await start(harness, implement_plan())
    state = await asyncio.wait_for(result, timeout=60)

    assert state.status == "succeeded"
    answers = tool_answers(seen)
    assert any("the value is [secret]" in a for a in answers), answers
    assert not any(secret in a for a in answers)
    events = harness.store.list_events(project_id)
    assert not any(secret in (e.message + json.dumps(e.data)) for e in events)
