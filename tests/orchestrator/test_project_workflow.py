"""ProjectWorkflow on a real Temporal server: ordering, parallelism, wiring, reviews, budgets."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError

from soma.errors import ModelError
from soma.models.function import FunctionModel
from soma.models.synthetic import SyntheticModel
from soma.models.types import ModelRequest, ModelResponse
from soma.orchestrator.projects import (
    cancel_project,
    project_handle,
    project_state,
    send_review,
    start_project,
)
from soma.orchestrator.types import ProjectParams, ProjectState, ReviewDecision
from soma.orchestrator.worker import build_worker
from soma.planner import template_plan
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import Plan, PlanNode
from soma.store import Store
from soma.workspace import Workspace

from .conftest import Harness

pytestmark = pytest.mark.slow

GOAL = "Build a todo-list CLI in Python"
SPEC_INPUT = "# Todo\n\nR1. `todo add` stores an item."


def new_project(harness: Harness, plan: Plan, **extra: Any) -> ProjectParams:
    project_id = f"p-{uuid.uuid4().hex[:8]}"
    harness.store.create_project(project_id=project_id, goal=plan.goal)
    return ProjectParams(project_id=project_id, goal=plan.goal, plan=plan, model="m", **extra)


async def run_to_end(harness: Harness, params: ProjectParams) -> ProjectState:
    """Run a project to its end, approving every human review gate as it opens."""
    handle = await start_project(harness.client, harness.settings, params)
    approver = asyncio.ensure_future(approve_all(harness, params.project_id))
    try:
        return await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        approver.cancel()


async def approve_all(harness: Harness, project_id: str) -> None:
    sent: set[tuple[str, int]] = set()
    while True:
        for review in harness.store.list_reviews(status="pending"):
            if review.project_id == project_id and (review.node_id, review.attempt) not in sent:
                sent.add((review.node_id, review.attempt))
                decision = ReviewDecision(
                    approved=True, comment="fine", reviewer="test", round=review.attempt
                )
                await send_review(harness.client, project_id, review.node_id, decision)
        await asyncio.sleep(0.1)


async def wait_for_node(harness: Harness, project_id: str, node: str, status: str) -> None:
    for _ in range(400):
        state = await project_state(harness.client, project_id)
        if state.nodes[node].status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node} never reached {status}: {state.nodes[node]}")


async def test_template_plan_runs_in_dependency_order_with_parallel_layers(
    harness: Harness,
) -> None:
    harness.models["m"] = SyntheticModel()
    params = new_project(harness, template_plan(GOAL, Library.builtin()), concurrency=3)

    state = await run_to_end(harness, params)

    assert state.status == "succeeded", state.error
    events = harness.store.list_events(params.project_id)
    started = [e.node_id for e in events if e.kind == "node_running"]
    finished = [e.node_id for e in events if e.kind == "node_succeeded"]
    order = {node: i for i, node in enumerate(started)}
    for node in params.plan.nodes:
        for dep in node.depends_on:
            assert finished.index(dep) < len(finished)
            dep_done = [
                i for i, e in enumerate(events) if e.kind == "node_succeeded" and e.node_id == dep
            ]
            me_start = [
                i for i, e in enumerate(events) if e.kind == "node_running" and e.node_id == node.id
            ]
            assert dep_done[0] < me_start[0], f"{node.id} started before {dep} finished"
    parallel = {"review", "docs", "security"} & set(order)
    if len(parallel) > 1:
        first_done = min(
            i for i, e in enumerate(events) if e.kind == "node_succeeded" and e.node_id in parallel
        )
        starts = [
            i for i, e in enumerate(events) if e.kind == "node_running" and e.node_id in parallel
        ]
        assert len([i for i in starts if i < first_done]) >= 2, "parallel layer ran serially"
    workspace = Workspace.open(harness.settings.workspaces_dir, params.project_id)
    authors = [c.author_name for c in workspace.log(50)]
    assert len([a for a in authors if "(" in a]) >= len(params.plan.nodes)
    nodes = {n.node_id: n for n in harness.store.list_nodes(params.project_id)}
    assert all(n.status == "succeeded" for n in nodes.values())
    assert all(n.commit_sha for n in nodes.values())


async def test_outputs_are_wired_into_later_inputs(harness: Harness) -> None:
    seen: list[ModelRequest] = []

    class Recording(SyntheticModel):
        async def complete(self, request: ModelRequest):  # type: ignore[no-untyped-def]
            seen.append(request)
            return await super().complete(request)

    harness.models["m"] = Recording()
    plan = Plan(
        goal=GOAL,
        nodes=[
            PlanNode(id="spec", capsule="write-spec", inputs={"goal": GOAL}),
            PlanNode(
                id="design",
                capsule="design-architecture",
                inputs={"spec": "${spec.outputs.spec}"},
                depends_on=["spec"],
            ),
        ],
    )
    params = new_project(harness, plan)
    state = await run_to_end(harness, params)

    assert state.status == "succeeded", state.error
    design_prompts = [
        r.messages[1].content or "" for r in seen if "design" in (r.messages[0].content or "")
    ]
    assert any("spec: synthetic answer" in p for p in design_prompts)


async def test_human_review_reject_then_approve(harness: Harness) -> None:
    seen: list[str] = []

    class Recording(SyntheticModel):
        async def complete(self, request: ModelRequest):  # type: ignore[no-untyped-def]
            seen.append(request.messages[1].content or "")
            return await super().complete(request)

    harness.models["m"] = Recording()
    plan = Plan(
        goal=GOAL,
        nodes=[PlanNode(id="review", capsule="review-code", inputs={"spec": SPEC_INPUT})],
    )
    params = new_project(harness, plan)
    handle = await start_project(harness.client, harness.settings, params)

    await wait_for_node(harness, params.project_id, "review", "waiting_review")
    pending = harness.store.list_reviews(status="pending")
    assert [(r.project_id, r.node_id) for r in pending] == [(params.project_id, "review")]
    await send_review(
        harness.client,
        params.project_id,
        "review",
        ReviewDecision(approved=False, comment="Check error handling too."),
    )
    await wait_for_node(harness, params.project_id, "review", "running")
    await wait_for_node(harness, params.project_id, "review", "waiting_review")
    assert "Check error handling too." in seen[-1]
    await send_review(harness.client, params.project_id, "review", ReviewDecision(approved=True))
    state = await asyncio.wait_for(handle.result(), timeout=60)

    assert state.status == "succeeded"
    kinds = [e.kind for e in harness.store.list_events(params.project_id)]
    assert kinds.count("review_requested") == 2
    assert "review_rejected" in kinds
    assert "review_approved" in kinds


async def test_project_token_budget_stops_later_nodes(harness: Harness) -> None:
    harness.models["m"] = SyntheticModel()
    params = new_project(
        harness, template_plan(GOAL, Library.builtin()), concurrency=1, max_project_tokens=10
    )
    state = await run_to_end(harness, params)

    assert state.status == "failed"
    assert state.error is not None
    assert state.error.startswith("BudgetExceeded")
    statuses = {n.status for n in state.nodes.values()}
    assert statuses == {"succeeded", "skipped"}
    assert state.nodes["spec"].status == "succeeded"
    project = harness.store.get_project(params.project_id)
    assert project.status == "failed"
    assert "BudgetExceeded" in (project.error or "")


async def test_node_failure_skips_dependents(harness: Harness) -> None:
    harness.models["m"] = SyntheticModel()
    plan = template_plan(GOAL, Library.builtin())
    broken = [
        n.model_copy(update={"inputs": {"goal": "x"}}) if n.id == "spec" else n for n in plan.nodes
    ]
    params = new_project(harness, plan.model_copy(update={"nodes": broken}))
    state = await run_to_end(harness, params)

    assert state.status == "failed"
    assert state.nodes["spec"].status == "failed"
    assert "inputs.goal" in (state.nodes["spec"].error or "") or state.error
    assert all(n.status == "skipped" for k, n in state.nodes.items() if k != "spec")


async def test_cancel_while_waiting_for_review(harness: Harness) -> None:
    harness.models["m"] = SyntheticModel()
    plan = Plan(
        goal=GOAL,
        nodes=[PlanNode(id="review", capsule="review-code", inputs={"spec": SPEC_INPUT})],
    )
    params = new_project(harness, plan)
    handle = await start_project(harness.client, harness.settings, params)
    await wait_for_node(harness, params.project_id, "review", "waiting_review")

    await cancel_project(harness.client, params.project_id)
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), timeout=60)
    assert isinstance(failure.value.cause, CancelledError)
    assert harness.store.get_project(params.project_id).status == "cancelled"
    description = await project_handle(harness.client, params.project_id).describe()
    assert description.status is not None
    assert description.status.name == "CANCELED"


async def test_capsule_wall_time_budget_stops_the_node(
    harness_settings: Settings, temporal_client: Client, store: Store, tmp_path: Path
) -> None:
    capsule_dir = tmp_path / "library" / "capsules" / "slow-spec"
    capsule_dir.mkdir(parents=True)
    source = Library.builtin().capsule("write-spec").model_dump(by_alias=True, mode="json")
    source.update(name="slow-spec", budget={"max_steps": 8, "max_wall_s": 0.2})
    (capsule_dir / "capsule.yaml").write_text(yaml.safe_dump(source))
    library = Library.from_dirs(tmp_path / "library", builtin=True)
    worker = build_worker(
        temporal_client,
        harness_settings,
        store=store,
        library=library,
        models=lambda _: SyntheticModel(latency_s=0.3),
    )
    plan = Plan(goal=GOAL, nodes=[PlanNode(id="slow", capsule="slow-spec", inputs={"goal": GOAL})])
    project_id = f"p-{uuid.uuid4().hex[:8]}"
    store.create_project(project_id=project_id, goal=GOAL)
    async with worker:
        handle = await start_project(
            temporal_client,
            harness_settings,
            ProjectParams(project_id=project_id, goal=GOAL, plan=plan, model="m"),
        )
        state = await asyncio.wait_for(handle.result(), timeout=60)

    assert state.status == "failed"
    assert "wall-time budget exceeded" in (state.nodes["slow"].error or "")


def failing_first(capsules: set[str], failures: int) -> FunctionModel:
    """Fails the first ``failures`` calls of agents working on ``capsules``, then behaves."""
    synthetic = SyntheticModel()
    seen: dict[str, int] = {}

    async def reply(request: ModelRequest) -> ModelResponse:
        system = request.messages[0].content or ""
        for name in capsules:
            if f"task '{name}'" in system:
                seen[name] = seen.get(name, 0) + 1
                if seen[name] <= failures:
                    raise ModelError(f"{name} provider refused")
        return await synthetic.complete(request)

    return FunctionModel(reply)


async def test_retry_policy_runs_a_failed_node_again(harness: Harness) -> None:
    harness.models["m"] = failing_first({"write-spec"}, failures=1)
    plan = Plan(
        goal=GOAL,
        nodes=[
            PlanNode(
                id="spec",
                capsule="write-spec",
                inputs={"goal": GOAL},
                on_failure="retry",
                retries=2,
            ),
            PlanNode(
                id="design",
                capsule="design-architecture",
                inputs={"spec": "${spec.outputs.spec}"},
                depends_on=["spec"],
            ),
        ],
    )
    state = await run_to_end(harness, new_project(harness, plan))

    assert state.status == "succeeded", state.error
    assert state.nodes["spec"].attempts == 2
    assert state.nodes["design"].status == "succeeded"
    model = harness.models["m"]
    assert isinstance(model, FunctionModel)
    retried = [
        r.messages[1].content or ""
        for r in model.requests
        if "carrying out the task 'write-spec'" in (r.messages[0].content or "")
    ][-1]
    assert "Your previous attempt was not accepted" in retried
    assert "provider refused" in retried


async def test_continue_policy_lets_independent_branches_finish(harness: Harness) -> None:
    harness.models["m"] = failing_first({"write-spec"}, failures=5)
    plan = Plan(
        goal=GOAL,
        nodes=[
            PlanNode(id="spec", capsule="write-spec", inputs={"goal": GOAL}, on_failure="continue"),
            PlanNode(
                id="design",
                capsule="design-architecture",
                inputs={"spec": "${spec.outputs.spec}"},
                depends_on=["spec"],
            ),
            PlanNode(id="docs", capsule="write-docs", inputs={"spec": SPEC_INPUT}),
        ],
    )
    state = await run_to_end(harness, new_project(harness, plan, concurrency=1))

    assert state.status == "failed"
    assert state.nodes["spec"].status == "failed"
    assert "provider refused" in (state.nodes["spec"].error or "")
    assert state.nodes["design"].status == "skipped"
    assert state.nodes["docs"].status == "succeeded"
