"""The review inbox: pending gates with what to review (the run's output and commit), and
approve or reject with a comment: the same decision path as the REST API."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from soma.console.access import page
from soma.console.pages.projects import commit_diff
from soma.console.templating import render
from soma.gateway.auth import services
from soma.gateway.routes.reviews import decide
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.store import EventRecord

router = APIRouter()

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(page(Permission.REVIEWS_READ))]
Decider = Annotated[Principal, Depends(page(Permission.REVIEWS_DECIDE))]


@router.get("/reviews", response_class=HTMLResponse)
async def inbox(request: Request, who: Reader, svc: Svc) -> HTMLResponse:
    pending = await asyncio.to_thread(svc.store.list_reviews, "pending", who.tenant_id)
    gates = []
    asks = await _gate_requests(svc, who.tenant_id, {r.project_id for r in pending})
    for review in pending:
        project = await asyncio.to_thread(svc.store.get_project, review.project_id, who.tenant_id)
        node = await asyncio.to_thread(
            svc.store.get_node, review.project_id, review.node_id, tenant_id=who.tenant_id
        )
        gates.append(
            {
                "ask": asks.get((review.project_id, review.node_id, review.attempt)),
                "review": review,
                "project": project,
                "node": node,
                "diff": await commit_diff(project, node),
            }
        )
    decided = await asyncio.to_thread(svc.store.list_reviews, None, who.tenant_id)
    recent = [r for r in decided if r.status != "pending"][-20:][::-1]
    return render(
        request,
        "reviews.html",
        who,
        title="Reviews",
        gates=gates,
        recent=recent,
        can_decide=who.can(Permission.REVIEWS_DECIDE),
    )


@router.post("/reviews/{project_id}/{node_id}/{verdict}")
async def decide_gate(
    project_id: str,
    node_id: str,
    verdict: Literal["approve", "reject"],
    who: Decider,
    svc: Svc,
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> RedirectResponse:
    await decide(
        svc, who, project_id, node_id, approved=verdict == "approve", comment=comment.strip()
    )
    return RedirectResponse("/reviews", status_code=303)


async def _gate_requests(
    svc: Services, tenant_id: str, project_ids: set[str]
) -> dict[tuple[str, str, int], EventRecord]:
    """The ``review_requested`` event of each gate: what it asks (a tool gate names the tool
    and its arguments), keyed by project, run and gate number."""
    found: dict[tuple[str, str, int], EventRecord] = {}
    for project_id in project_ids:
        events = await asyncio.to_thread(
            svc.store.list_events, project_id, 0, 5000, tenant_id=tenant_id
        )
        for event in events:
            gate = (event.data or {}).get("gate")
            if event.kind == "review_requested" and event.node_id and isinstance(gate, int):
                found[(project_id, event.node_id, gate)] = event
    return found
