"""`soma run`: plan a goal, execute the plan on Temporal, show the DAG live."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.prompt import Confirm, Prompt
from temporalio.client import Client, WorkflowFailureError

from soma.cli.dag_view import dag_table
from soma.orchestrator.launch import PlannerMode, plan_goal, provision_resources, record_project
from soma.orchestrator.projects import project_state, send_review, start_project
from soma.orchestrator.server import connect
from soma.orchestrator.types import ProjectParams, ProjectState, ReviewDecision
from soma.orchestrator.worker import build_worker
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import Store
from soma.workspace.resources import ResourceRequest

REFRESH_S = 0.5


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
    resources: Sequence[ResourceRequest] = (),
) -> ProjectState:
    store = Store.open(settings.store_url)
    with console.status("planning…"):
        planned = await plan_goal(goal, library, model_spec, planner, settings)
    why = f" ({planned.reason})" if planned.reason else ""
    console.print(
        f"plan: {len(planned.plan.nodes)} nodes by the [bold]{planned.planner}[/] planner{why}"
    )
    prepared = record_project(
        settings,
        store,
        goal,
        planned,
        model_spec=model_spec,
        concurrency=concurrency,
        max_tokens=max_tokens,
    )
    if resources:
        with console.status("provisioning resources…"):
            provisioned = await provision_resources(settings, store, prepared.record, resources)
        for res in provisioned:
            console.print(f"resource {res.kind} {res.name}: {res.location}")
    params = prepared.params
    with console.status("starting the durable engine (Temporal)…"):
        client = await connect(settings)
    console.print(
        f"project [bold]{params.project_id}[/] — workspace {prepared.record.workspace_path}"
    )
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
