"""Projects: the list, a new project from a goal, the live DAG view, a run's detail, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from soma.console.access import page
from soma.console.dag import NODE_H, NODE_W, layout
from soma.console.templating import render
from soma.errors import Conflict, SomaError
from soma.gateway.auth import services
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.orchestrator.launch import launch_project
from soma.orchestrator.projects import cancel_project
from soma.store import NodeRecord, ProjectRecord
from soma.store.records import PROJECT_TERMINAL
from soma.workspace.workspace import Workspace

router = APIRouter()

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(page(Permission.PROJECTS_READ))]
Writer = Annotated[Principal, Depends(page(Permission.PROJECTS_WRITE))]

# Event kinds shown as a run's conversation, and as its tool calls.
MESSAGE_KINDS = frozenset({"model", "message", "invalid_output", "critique_ok", "critique_revise"})
TOOL_KINDS = frozenset({"tool", "policy"})


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/projects", status_code=303)


@router.get("/projects", response_class=HTMLResponse)
async def projects(request: Request, who: Reader, svc: Svc) -> HTMLResponse:
    records = await asyncio.to_thread(svc.store.list_projects, who.tenant_id, 100)
    return render(request, "projects.html", who, title="Projects", projects=records)


@router.post("/projects")
async def create_project(
    request: Request,
    who: Writer,
    svc: Svc,
    goal: Annotated[str, Form(min_length=1, max_length=4000)],
    planner: Annotated[Literal["auto", "template", "model"], Form()] = "auto",
) -> RedirectResponse:
    prepared = await launch_project(
        svc.engine(),
        svc.settings,
        svc.store,
        svc.library_for(who.tenant_id),
        goal.strip(),
        model_spec=svc.settings.model,
        planner=planner,
        tenant_id=who.tenant_id,
    )
    return RedirectResponse(f"/projects/{prepared.record.id}", status_code=303)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
async def project(request: Request, project_id: str, who: Reader, svc: Svc) -> HTMLResponse:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    nodes = await asyncio.to_thread(svc.store.list_nodes, project_id, tenant_id=who.tenant_id)
    events = await asyncio.to_thread(
        svc.store.list_events, project_id, 0, 1000, tenant_id=who.tenant_id
    )
    return render(
        request,
        "project.html",
        who,
        title=record.goal,
        project=record,
        runs={n.node_id: n for n in nodes},
        dag=layout(record.plan),
        node_w=NODE_W,
        node_h=NODE_H,
        events=events[-200:],
        last_event=events[-1].id if events else 0,
        terminal=record.status in PROJECT_TERMINAL,
    )


@router.post("/projects/{project_id}/cancel")
async def cancel(project_id: str, who: Writer, svc: Svc) -> RedirectResponse:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    if record.status in PROJECT_TERMINAL:
        raise Conflict(f"project {project_id!r} already {record.status}")
    await cancel_project(svc.engine(), project_id)
    return RedirectResponse(f"/projects/{project_id}", status_code=303)


@router.get("/projects/{project_id}/runs/{node_id}", response_class=HTMLResponse)
async def run(
    request: Request, project_id: str, node_id: str, who: Reader, svc: Svc
) -> HTMLResponse:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    node = await asyncio.to_thread(svc.store.get_node, project_id, node_id, tenant_id=who.tenant_id)
    events = await asyncio.to_thread(
        svc.store.list_events, project_id, 0, 5000, tenant_id=who.tenant_id
    )
    mine = [e for e in events if e.node_id == node_id]
    decisions = await asyncio.to_thread(
        svc.store.list_audit, project_id, who.tenant_id, 1000, 0, node_id=node_id
    )
    reviews = await asyncio.to_thread(
        svc.store.list_reviews, None, who.tenant_id, project_id=project_id
    )
    return render(
        request,
        "run.html",
        who,
        title=f"{node_id} · {record.goal}",
        project=record,
        node=node,
        messages=[e for e in mine if e.kind in MESSAGE_KINDS],
        tools=[e for e in mine if e.kind in TOOL_KINDS],
        history=mine,
        decisions=decisions,
        reviews=[r for r in reviews if r.node_id == node_id],
        diff=await commit_diff(record, node),
    )


async def commit_diff(project: ProjectRecord, node: NodeRecord) -> str | None:
    """The run's commit as a patch, or None when it made none (or the workspace is gone)."""
    if not node.commit_sha or not project.workspace_path:
        return None
    workspace = Workspace(Path(project.workspace_path), project.id)
    try:
        return await asyncio.to_thread(workspace.show, node.commit_sha)
    except SomaError as exc:
        return f"(the commit could not be read: {exc})"
