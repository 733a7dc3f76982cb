"""Human review gates: list the tenant's, approve or reject one."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from soma.errors import NotFound
from soma.gateway.auth import require, services
from soma.gateway.schemas import ReviewDecisionIn, ReviewOut
from soma.gateway.services import Services
from soma.identity.permissions import Permission
from soma.identity.principal import Principal
from soma.orchestrator.projects import send_review
from soma.orchestrator.types import ReviewDecision
from soma.store import ReviewRecord

router = APIRouter(prefix="/api/v1", tags=["reviews"])

Svc = Annotated[Services, Depends(services)]
Reader = Annotated[Principal, Depends(require(Permission.REVIEWS_READ))]
Decider = Annotated[Principal, Depends(require(Permission.REVIEWS_DECIDE))]


@router.get("/reviews", summary="The tenant's review gates")
async def list_reviews(
    who: Reader,
    svc: Svc,
    status: Annotated[Literal["pending", "approved", "rejected", "any"], Query()] = "pending",
    project: Annotated[str | None, Query(max_length=128)] = None,
) -> list[ReviewOut]:
    records = await asyncio.to_thread(
        svc.store.list_reviews,
        None if status == "any" else status,
        who.tenant_id,
        project_id=project,
    )
    return [_review(r) for r in records]


@router.post(
    "/projects/{project_id}/reviews/{node_id}/approve",
    status_code=202,
    summary="Approve the node's pending review",
)
async def approve(
    project_id: str, node_id: str, body: ReviewDecisionIn, who: Decider, svc: Svc
) -> ReviewOut:
    return await decide(svc, who, project_id, node_id, approved=True, comment=body.comment)


@router.post(
    "/projects/{project_id}/reviews/{node_id}/reject",
    status_code=202,
    summary="Reject the node's pending review; the agent revises with the comment",
)
async def reject(
    project_id: str, node_id: str, body: ReviewDecisionIn, who: Decider, svc: Svc
) -> ReviewOut:
    return await decide(svc, who, project_id, node_id, approved=False, comment=body.comment)


async def decide(
    svc: Services, who: Principal, project_id: str, node_id: str, *, approved: bool, comment: str
) -> ReviewOut:
    """Signals the workflow, which records the decision: the store changes only once the
    decision is durable in the engine, so an accepted request is never lost."""
    pending = await asyncio.to_thread(
        svc.store.list_reviews, "pending", who.tenant_id, project_id=project_id
    )
    gate = next((review for review in pending if review.node_id == node_id), None)
    if gate is None:
        raise NotFound(
            f"no pending review for run {node_id!r} of project {project_id!r}",
            hint="GET /api/v1/reviews lists the pending ones",
        )
    decision = ReviewDecision(
        approved=approved, comment=comment, reviewer=f"user:{who.user_id}", round=gate.attempt
    )
    await send_review(svc.engine(), project_id, node_id, decision)
    return _review(gate)


def _review(review: ReviewRecord) -> ReviewOut:
    return ReviewOut(
        id=review.id,
        project_id=review.project_id,
        node_id=review.node_id,
        round=review.attempt,
        status=review.status,
        comment=review.comment,
        decided_by=review.decided_by,
        created_at=review.created_at,
        decided_at=review.decided_at,
    )
