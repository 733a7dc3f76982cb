"""Projects and their runs: create from a goal, list, watch live (SSE), cancel, tear down
their provisioned resources."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from soma.errors import Conflict
from soma.gateway.auth import require, services
from soma.gateway.schemas import (
    MAX_ID,
    EventOut,
    ProjectCreate,
    ProjectOut,
    ResourceOut,
    RunOut,
)
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.orchestrator.launch import launch_project
from soma.orchestrator.projects import cancel_project
from soma.secrets import Vault
from soma.store import EventRecord
from soma.workspace.resources import ResourceManager

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require(Permission.PROJECTS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.PROJECTS_WRITE))]

TERMINAL = {"succeeded", "failed", "cancelled"}
POLL_S = 0.5
KEEPALIVE_S = 15.0


@router.post("", status_code=201, summary="Plan a goal and start it as a project")
async def create_project(body: ProjectCreate, who: Writer, svc: Svc) -> ProjectOut:
    prepared = await launch_project(
        svc.engine(),
        svc.settings,
        svc.store,
        svc.library_for(who.tenant_id),
        body.goal,
        model_spec=body.model or svc.settings.model,
        planner=body.planner,
        concurrency=body.concurrency,
        max_tokens=body.max_tokens,
        tenant_id=who.tenant_id,
        resources=body.resources,
        vault=Vault(svc.store, svc.secret_key),
    )
    resources = await asyncio.to_thread(
        svc.store.list_resources, prepared.record.id, tenant_id=who.tenant_id
    )
    return ProjectOut.of(prepared.record, resources=resources)


@router.get("", summary="The tenant's projects, newest first")
async def list_projects(
    who: Reader, svc: Svc, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ProjectOut]:
    records = await asyncio.to_thread(svc.store.list_projects, who.tenant_id, limit)
    return [ProjectOut.of(r) for r in records]


@router.get("/{project_id}", summary="One project with its runs' live state")
async def get_project(project_id: str, who: Reader, svc: Svc) -> ProjectOut:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    nodes = await asyncio.to_thread(svc.store.list_nodes, project_id, tenant_id=who.tenant_id)
    resources = await asyncio.to_thread(
        svc.store.list_resources, project_id, tenant_id=who.tenant_id
    )
    return ProjectOut.of(record, nodes, resources)


@router.post("/{project_id}/cancel", status_code=202, summary="Cancel a running project")
async def cancel(project_id: str, who: Writer, svc: Svc) -> ProjectOut:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    if record.status in TERMINAL:
        raise Conflict(f"project {project_id!r} already {record.status}")
    await cancel_project(svc.engine(), project_id)
    return ProjectOut.of(record)


@router.get("/{project_id}/resources", summary="The project's provisioned resources")
async def list_resources(project_id: str, who: Reader, svc: Svc) -> list[ResourceOut]:
    await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    records = await asyncio.to_thread(svc.store.list_resources, project_id, tenant_id=who.tenant_id)
    return [ResourceOut.of(r) for r in records]


@router.post(
    "/{project_id}/teardown", summary="Tear down a finished project's provisioned resources"
)
async def teardown(project_id: str, who: Writer, svc: Svc) -> list[ResourceOut]:
    record = await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    if record.status not in TERMINAL:
        raise Conflict(
            f"project {project_id!r} is still {record.status}",
            hint="wait for it to finish, or cancel it first; its agents may still use them",
        )
    manager = ResourceManager(svc.store, svc.settings, Vault(svc.store, svc.secret_key))
    records = await manager.teardown(who.tenant_id, project_id)
    return [ResourceOut.of(r) for r in records]


@router.get("/{project_id}/runs", summary="The project's runs (plan nodes)")
async def list_runs(project_id: str, who: Reader, svc: Svc) -> list[RunOut]:
    nodes = await asyncio.to_thread(svc.store.list_nodes, project_id, tenant_id=who.tenant_id)
    return [RunOut.of(n) for n in nodes]


@router.get("/{project_id}/runs/{node_id}", summary="One run")
async def get_run(project_id: str, node_id: str, who: Reader, svc: Svc) -> RunOut:
    node = await asyncio.to_thread(svc.store.get_node, project_id, node_id, tenant_id=who.tenant_id)
    return RunOut.of(node)


@router.get("/{project_id}/events", summary="The project's events after an id, oldest first")
async def list_events(
    project_id: str,
    who: Reader,
    svc: Svc,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[EventOut]:
    events = await asyncio.to_thread(
        svc.store.list_events, project_id, after, limit, tenant_id=who.tenant_id
    )
    return [_event(e) for e in events]


@router.get(
    "/{project_id}/events/stream",
    summary="Server-sent events: the project's events live, ending when it finishes",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    project_id: str,
    request: Request,
    who: Reader,
    svc: Svc,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
    named_events: Annotated[
        bool,
        Query(
            description="false: send every event as a plain `message` (its kind is in the "
            "data), for clients like the browser's EventSource that listen to one type"
        ),
    ] = True,
) -> StreamingResponse:
    # Checked before streaming starts, so an unknown project is a plain 404.
    await asyncio.to_thread(svc.store.get_project, project_id, who.tenant_id)
    start = last_event_id if last_event_id is not None else after
    return StreamingResponse(
        _event_stream(svc, who.tenant_id, project_id, start, request, named=named_events),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )


async def _event_stream(
    svc: Services,
    tenant_id: str,
    project_id: str,
    after: int,
    request: Request,
    *,
    named: bool = True,
) -> AsyncIterator[str]:
    """Tails the store: the workers write events there, so any gateway replica can stream any
    project, and a reconnecting client resumes from ``Last-Event-ID`` without gaps."""
    idle_s = 0.0
    finished_seen = False
    while not await request.is_disconnected():
        events = await asyncio.to_thread(
            svc.store.list_events, project_id, after, 500, tenant_id=tenant_id
        )
        for event in events:
            after = event.id
            payload = _event(event).model_dump_json()
            kind = f"event: {event.kind}\n" if named else ""
            yield f"id: {event.id}\n{kind}data: {payload}\n\n"
        if events:
            idle_s = 0.0
            continue
        record = await asyncio.to_thread(svc.store.get_project, project_id, tenant_id)
        # A finished status and its last event are separate writes: look once more before ending.
        if record.status in TERMINAL and finished_seen:
            final = json.dumps({"status": record.status, "error": record.error})
            yield f"event: end\ndata: {final}\n\n"
            return
        finished_seen = record.status in TERMINAL
        await asyncio.sleep(POLL_S)
        idle_s += POLL_S
        if idle_s >= KEEPALIVE_S:
            idle_s = 0.0
            yield ": keep-alive\n\n"


def _event(event: EventRecord) -> EventOut:
    return EventOut(
        id=event.id,
        node_id=event.node_id,
        kind=event.kind,
        message=event.message,
        data=event.data,
        created_at=event.created_at,
    )
