"""`soma run`: plan a goal, execute the plan on Temporal, show the DAG live."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from typing import Literal

from rich.console import Console
from rich.live import Live
from rich.prompt import Confirm, Prompt
from temporalio.client import Client, WorkflowFailureError

from soma.cli.dag_view import dag_table
from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.orchestrator.projects import project_state, send_review, start_project
from soma.orchestrator.server import connect
from soma.orchestrator.types import ProjectParams, ProjectState, ReviewDecision
from soma.orchestrator.worker import build_worker
from soma.planner import PlanResult, make_plan
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import Store
from soma.workspace import Workspace

PlannerMode = Literal["auto", "model", "template"]
REFRESH_S = 0.5
LOCAL_TOO_WEAK = (
    "the embedded model is too small to plan reliably (0 valid plans in 3 attempts, measured; "
    "docs/models.md) — pass --planner model to try it anyway"
)


def new_project_id(goal: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", goal.lower()).strip("-")[:40].strip("-") or "project"
    return f"{slug}-{uuid.uuid4().hex[:6]}"


async def plan_goal(
    goal: str, library: Library, model_spec: str, mode: PlannerMode, settings: Settings
) -> PlanResult:
    """The embedded model is measured too weak to plan, so ``auto`` skips straight to the
    template planner for it; any other model is tried first."""
    if mode == "auto" and model_spec.split(":")[0] == "local":
        result = await make_plan(goal, library, None, mode="template")
        return result.model_copy(update={"reason": LOCAL_TOO_WEAK})
    model: Model | None = None if mode == "template" else resolve_model(model_spec, settings)
    return await make_plan(goal, library, model, mode=mode)


class Reviewer:
    """Answers review gates for `soma run`: by flag, by asking on a terminal, or by telling
    the user which command to run."""

    def __init__(self, console: Console, client: Client, auto_approve: bool) -> None:
        self.console = console
        self.client = client
        self.auto_approve = auto_approve
        self.interactive = sys.stdin.isatty()
        self._told: set[str] = set()

    async def handle(self, state: ProjectState, live: Live) -> None:
        for node in state.nodes.values():
            if node.status != "waiting_review":
                continue
            key = f"{node.node_id}:{node.last_event}"
            if key in self._told:
                continue
            self._told.add(key)
            decision = await self._decide(state.project_id, node.node_id, live)
            if decision is not None:
                await send_review(self.client, state.project_id, node.node_id, decision)

    async def _decide(self, project_id: str, node_id: str, live: Live) -> ReviewDecision | None:
        if self.auto_approve:
            return ReviewDecision(approved=True, comment="--auto-approve", reviewer="cli")
        if not self.interactive:
            self.console.print(
                f"[yellow]{node_id} waits for review:[/] soma review approve {project_id} "
                f"{node_id}   (or reject … --comment '…')"
            )
            return None
        live.stop()
        try:
            approved = await asyncio.to_thread(
                Confirm.ask, f"Approve [bold]{node_id}[/] (see its commit in the workspace)?"
            )
            comment = await asyncio.to_thread(Prompt.ask, "Comment", default="")
        finally:
            live.start()
        return ReviewDecision(approved=approved, comment=comment, reviewer="cli")


async def run_project(
    settings: Settings,
    goal: str,
    *,
    console: Console,
    library: Library,
    model_spec: str,
    planner: PlannerMode,
    concurrency: int,
    max_tokens: int | None,
    auto_approve: bool,
    in_process_worker: bool,
) -> ProjectState:
    store = Store.open(settings.store_url)
    with console.status("planning…"):
        planned = await plan_goal(goal, library, model_spec, planner, settings)
    why = f" ({planned.reason})" if planned.reason else ""
    console.print(
        f"plan: {len(planned.plan.nodes)} nodes by the [bold]{planned.planner}[/] planner{why}"
    )
    project_id = new_project_id(goal)
    workspace = Workspace.open(settings.workspaces_dir, project_id)
    store.create_project(
        project_id=project_id,
        goal=goal,
        status="running",
        planner=planned.planner,
        plan=planned.plan.model_dump(mode="json"),
        workflow_id=f"project-{project_id}",
        workspace_path=str(workspace.path),
    )
    with console.status("starting the durable engine (Temporal)…"):
        client = await connect(settings)
    params = ProjectParams(
        project_id=project_id,
        goal=goal,
        plan=planned.plan,
        model=model_spec,
        concurrency=concurrency,
        max_project_tokens=max_tokens,
    )
    console.print(f"project [bold]{project_id}[/] — workspace {workspace.path}")
    if not in_process_worker:
        return await _watch(client, settings, params, console, library, auto_approve)
    async with build_worker(client, settings, store=store, library=library):
        return await _watch(client, settings, params, console, library, auto_approve)


async def _watch(
    client: Client,
    settings: Settings,
    params: ProjectParams,
    console: Console,
    library: Library,
    auto_approve: bool,
) -> ProjectState:
    handle = await start_project(client, settings, params)
    reviewer = Reviewer(console, client, auto_approve)
    result = asyncio.ensure_future(handle.result())
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while not result.done():
            state = await project_state(client, params.project_id)
            live.update(dag_table(state, library))
            await reviewer.handle(state, live)
            await asyncio.wait([result], timeout=REFRESH_S)
        try:
            final = result.result()
        except WorkflowFailureError:
            final = await project_state(client, params.project_id)
        live.update(dag_table(final, library))
    return final
