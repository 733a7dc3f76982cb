"""Commands about projects: run, status, logs, cancel, teardown, reviews, the engine and
workers."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from soma.cli.common import console, friendly_errors, load_library
from soma.cli.dag_view import STATUS_STYLE
from soma.cli.orchestrate import run_project
from soma.errors import Conflict, NotFound
from soma.identity.secret import load_secret_key
from soma.orchestrator.background import background_consumers
from soma.orchestrator.launch import PlannerMode
from soma.orchestrator.projects import cancel_project, send_review
from soma.orchestrator.server import EmbeddedTemporal, connect, connect_patiently
from soma.orchestrator.types import ReviewDecision
from soma.orchestrator.worker import build_worker
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import DEFAULT_TENANT, Store
from soma.telemetry import init_process
from soma.telemetry.metrics import start_metrics_server
from soma.telemetry.temporal import backlog_monitor
from soma.workspace.resources import ResourceManager, ResourceRequest

review_app = typer.Typer(help="Human review gates: list, approve, reject.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded Temporal server.", no_args_is_help=True)


@friendly_errors
def run(
    goal: Annotated[str, typer.Argument(help="What the project should achieve.")],
    planner: Annotated[
        str, typer.Option(help="auto (model, else template), model, or template.")
    ] = "auto",
    model: Annotated[
        str | None, typer.Option(help="Model: 'local' or 'openai:<name>'. Default: SOMA_MODEL.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Nodes run at once.")] = 3,
    max_tokens: Annotated[
        int | None, typer.Option(help="Project token budget; later nodes stop past it.")
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option(help="Approve human review gates without asking.")
    ] = False,
    worker: Annotated[
        bool, typer.Option(help="Run a worker in this process (off: use `soma worker`s).")
    ] = True,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            help="Provision before starting, as kind[:name], repeatable: git.local, "
            "github.repo:owner/name, aws.s3_bucket:name. Remove with `soma teardown`."
        ),
    ] = None,
) -> None:
    """Plan a goal into a DAG of capsules and execute it durably, showing progress live."""
    if planner not in ("auto", "model", "template"):
        raise typer.BadParameter("use auto, model or template", param_hint="--planner")
    try:
        requests = [ResourceRequest.parse(spec) for spec in resource or []]
    except ValidationError as exc:
        raise typer.BadParameter(
            "; ".join(str(e["msg"]) for e in exc.errors()), param_hint="--resource"
        ) from None
    settings = Settings()
    mode: PlannerMode = planner  # type: ignore[assignment]
    state = asyncio.run(
        run_project(
            settings,
            goal,
            console=console,
            library=load_library(settings),
            model_spec=model or settings.model,
            planner=mode,
            concurrency=concurrency,
            max_tokens=max_tokens,
            auto_approve=auto_approve,
            in_process_worker=worker,
            resources=requests,
        )
    )
    style = STATUS_STYLE.get(state.status, "")
    usage = state.usage
    console.print()
    console.print(
        f"[{style}]{state.status}[/] — {usage.input_tokens} tokens in, "
        f"{usage.output_tokens} out; details: soma status {state.project_id}"
    )
    if state.error:
        console.print(f"[red]{escape(state.error)}[/]")
    if state.status != "succeeded":
        raise typer.Exit(1)


@friendly_errors
def status(
    project: Annotated[
        str | None, typer.Argument(help="Project id; omit to list projects.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Whose projects to list.")] = DEFAULT_TENANT,
) -> None:
    """List projects, or show one project's nodes, from the store."""
    store = Store.open(Settings().store_url)
    if project is None:
        table = Table("project", "status", "planner", "tokens", "created", "goal")
        for item in store.list_projects(tenant):
            tokens = item.usage_input_tokens + item.usage_output_tokens
            table.add_row(
                item.id,
                item.status,
                item.planner or "",
                str(tokens),
                f"{item.created_at:%Y-%m-%d %H:%M}",
                item.goal,
            )
        console.print(table)
        return
    tenant = store.project_tenant(project)
    record = store.get_project(project, tenant)
    console.print(f"[bold]{record.id}[/] {record.status} — {record.goal}")
    console.print(f"workspace: {record.workspace_path}")
    if record.error:
        console.print(f"[red]{escape(record.error)}[/]")
    table = Table(
        "node", "capsule", "status", "attempts", "steps", "tokens", "commit", "last event"
    )
    for node in store.list_nodes(project, tenant_id=tenant):
        table.add_row(
            node.node_id,
            node.capsule or "",
            f"[{STATUS_STYLE.get(node.status, '')}]{node.status}[/]",
            str(node.attempts),
            str(node.steps),
            str(node.input_tokens + node.output_tokens),
            (node.commit_sha or "")[:12],
            escape((node.last_event or "")[:60]),
        )
    console.print(table)


@friendly_errors
def logs(
    project: Annotated[str, typer.Argument(help="Project id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
) -> None:
    """Print a project's events (model calls, tool calls, node changes, reviews)."""
    store = Store.open(Settings().store_url)
    tenant = store.project_tenant(project)
    last = 0
    while True:
        for event in store.list_events(project, after_id=last, tenant_id=tenant):
            last = event.id
            node = f"[bold]{event.node_id}[/] " if event.node_id else ""
            console.print(
                f"{event.created_at:%H:%M:%S} {node}[cyan]{event.kind}[/] {escape(event.message)}"
            )
        if not follow or store.get_project(project, tenant).finished_at is not None:
            return
        time.sleep(1.0)


@friendly_errors
def cancel(project: Annotated[str, typer.Argument(help="Project id.")]) -> None:
    """Cancel a running project; running nodes stop and are recorded as cancelled."""
    settings = Settings()

    async def go() -> None:
        await cancel_project(await connect(settings), project)

    asyncio.run(go())
    console.print(f"cancellation requested for {project}")


@friendly_errors
def teardown(project: Annotated[str, typer.Argument(help="Project id.")]) -> None:
    """Tear down a finished project's provisioned resources, reporting each."""
    settings = Settings()
    store = Store.open(settings.store_url)
    tenant = store.project_tenant(project)
    record = store.get_project(project, tenant)
    if record.finished_at is None:
        raise Conflict(
            f"project {project!r} is still {record.status}",
            hint=f"wait for it to finish, or `soma cancel {project}` first",
        )
    manager = ResourceManager(store, settings, Vault(store, load_secret_key(settings)))
    try:
        records = asyncio.run(manager.teardown(tenant, project))
    finally:
        table = Table("kind", "name", "status", "location", "how / error")
        for res in store.list_resources(project, tenant_id=tenant):
            how = res.error or str((res.details or {}).get("teardown") or "")
            table.add_row(res.kind, res.name, res.status, res.location or "", escape(how))
        console.print(table)
    if not records:
        console.print(f"project {project} has no resources")


@review_app.command("list")
@friendly_errors
def review_list(
    tenant: Annotated[str, typer.Option(help="Whose review gates to list.")] = DEFAULT_TENANT,
) -> None:
    """Pending review gates."""
    store = Store.open(Settings().store_url)
    table = Table("project", "node", "round", "opened")
    for review in store.list_reviews(status="pending", tenant_id=tenant):
        table.add_row(
            review.project_id,
            review.node_id,
            str(review.attempt + 1),
            f"{review.created_at:%H:%M:%S}",
        )
    console.print(table)


def _decide(project: str, node: str, approved: bool, comment: str) -> None:
    settings = Settings()
    store = Store.open(settings.store_url)
    pending = store.list_reviews(
        status="pending", tenant_id=store.project_tenant(project), project_id=project
    )
    gate = next((review for review in pending if review.node_id == node), None)
    if gate is None:
        raise NotFound(
            f"no pending review for node {node!r} of project {project!r}",
            hint="soma review list shows the pending ones",
        )

    async def go() -> None:
        decision = ReviewDecision(
            approved=approved, comment=comment, reviewer="cli", round=gate.attempt
        )
        await send_review(await connect(settings), project, node, decision)

    asyncio.run(go())
    console.print(f"{'approved' if approved else 'rejected'} {project}/{node}")


@review_app.command("approve")
@friendly_errors
def review_approve(
    project: Annotated[str, typer.Argument(help="Project id.")],
    node: Annotated[str, typer.Argument(help="Node id.")],
    comment: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Approve a node waiting for review."""
    _decide(project, node, True, comment)


@review_app.command("reject")
@friendly_errors
def review_reject(
    project: Annotated[str, typer.Argument(help="Project id.")],
    node: Annotated[str, typer.Argument(help="Node id.")],
    comment: Annotated[str, typer.Option(help="What to change; the agent gets it.")] = "",
) -> None:
    """Reject a node's work; the agent tries again with your comment."""
    _decide(project, node, False, comment)


@server_app.command("start")
@friendly_errors
def server_start() -> None:
    """Start the embedded Temporal server in the background (reused if running)."""
    address = EmbeddedTemporal(Settings()).start()
    console.print(f"Temporal is serving on {address}")


@server_app.command("stop")
@friendly_errors
def server_stop() -> None:
    """Stop the embedded Temporal server."""
    stopped = EmbeddedTemporal(Settings()).stop()
    console.print("stopped" if stopped else "not running")


@server_app.command("status")
@friendly_errors
def server_status() -> None:
    """Show whether the embedded Temporal server runs, where, and its files."""
    info = EmbeddedTemporal(Settings()).status()
    state = "[green]running[/]" if info.running else "[red]stopped[/]"
    console.print(f"{state} {info.address or ''} pid={info.pid or '-'}")
    console.print(f"database: {info.db_path}\nlog: {info.log_path}")


@friendly_errors
def worker() -> None:
    """Run a worker for the task queue until interrupted; start several to scale out."""
    settings = Settings()
    init_process(settings)
    if settings.metrics_port is not None:
        start_metrics_server(settings.metrics_port)

    async def go() -> None:
        client = await connect_patiently(
            settings,
            on_retry=lambda exc, delay: console.print(f"{exc}; retrying in {delay:.0f} s"),
        )
        store = Store.open(settings.store_url)
        running = build_worker(client, settings, store=store, library=load_library(settings))
        console.print(f"worker polling task queue {settings.task_queue!r}; Ctrl-C to stop")
        secret = load_secret_key(settings)
        async with (
            backlog_monitor(client, settings.task_queue),
            background_consumers(store, settings, secret) as consumers,
        ):
            if consumers:
                console.print("also running: " + ", ".join(consumers))
            await running.run()

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        console.print("worker stopped")
