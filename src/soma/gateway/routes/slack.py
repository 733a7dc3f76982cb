"""Slack's interactivity callback: the "Approve" / "Reject" buttons of ``slack.request_approval``.

The route is public: Slack sends no bearer credential, so the request is authenticated by
Slack's signature (HMAC-SHA256 with the tenant's signing secret) and the tenant is named in the
URL, whose secret must verify the signature. The button value holds only ids, re-checked against
the tenant's pending reviews, so nothing in it needs to be trusted beyond Slack's signature.

Slack shows an error to the clicking user for any non-200 answer, so once the signature holds,
every outcome (decided, no such review, engine down) is answered 200 with text saying what
happened; only a bad signature is refused (401).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from temporalio.service import RPCError

from soma.errors import SomaError, Unauthorized
from soma.gateway.errors import EngineUnavailable
from soma.gateway.services import Services
from soma.orchestrator.projects import send_review
from soma.orchestrator.types import ReviewDecision
from soma.tools.adapters.slack import APPROVE_ACTION, REJECT_ACTION, parse_approval_value

router = APIRouter(tags=["integrations"])

SIGNING_SECRET = "slack.signing_secret"
MAX_SKEW_S = 300

SecretsLookup = Callable[[str, str], str | None]
"""``(tenant_id, secret name) -> value or None``, set on ``app.state.slack_secrets``."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request, as sent in ``X-Slack-Signature``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float
) -> None:
    """Raises Unauthorized unless the request is signed with ``secret`` in the last 5 minutes.

    The timestamp bound stops a captured request from being replayed later."""
    if not timestamp or not signature:
        raise Unauthorized(
            "missing Slack signature headers",
            hint="this endpoint only accepts Slack's signed interactivity requests",
        )
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthorized("X-Slack-Request-Timestamp is not a Unix time") from None
    if abs(now - sent) > MAX_SKEW_S:
        raise Unauthorized(
            "the Slack request timestamp is more than 5 minutes off",
            hint="check the gateway's clock; Slack requests are not accepted when replayed",
        )
    expected = slack_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized(
            "the Slack signature does not match",
            hint=f"set the tenant's {SIGNING_SECRET!r} secret to the Slack app's signing secret",
        )


@router.post(
    "/integrations/slack/{tenant_id}/actions",
    summary="Slack interactivity callback: approve or reject a review from Slack's buttons",
    response_class=PlainTextResponse,
)
async def slack_actions(tenant_id: str, request: Request) -> PlainTextResponse:
    body = await request.body()
    lookup: SecretsLookup | None = getattr(request.app.state, "slack_secrets", None)
    secret = None
    if lookup is not None:  # the vault reads the database: off the event loop
        secret = await asyncio.to_thread(lookup, tenant_id, SIGNING_SECRET)
    if not secret:
        # The same answer as a bad signature: an unauthenticated caller learns nothing about
        # which tenants exist or have Slack set up.
        raise Unauthorized(
            "the Slack signature cannot be verified for this tenant",
            hint=f"an admin sets the tenant's {SIGNING_SECRET!r} secret, and the interactivity "
            f"URL in the Slack app must name the tenant: /integrations/slack/<tenant>/actions",
        )
    verify_signature(
        secret,
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
        body,
        now=time.time(),
    )
    action = _parse(body)
    if action is None:
        return PlainTextResponse("Nothing to do: this is not a Soma review button.")
    approved, project_id, node_id, round_, user_id, user_name = action
    svc: Services = request.app.state.services
    return PlainTextResponse(
        await _decide(svc, tenant_id, project_id, node_id, round_, approved, user_id, user_name)
    )


def _parse(body: bytes) -> tuple[bool, str, str, int | None, str, str] | None:
    """The first Soma review button in a ``block_actions`` payload, or None."""
    try:
        form = parse_qs(body.decode(), strict_parsing=False)
        payload: Any = json.loads(form.get("payload", ["{}"])[0])
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    user: Any = payload.get("user")
    if not isinstance(user, dict):
        user = {}
    user_id = str(user.get("id") or "unknown")
    user_name = str(user.get("username") or user.get("name") or user_id)
    for action in payload.get("actions") or []:
        if not isinstance(action, dict):
            continue
        kind = action.get("action_id")
        if kind not in (APPROVE_ACTION, REJECT_ACTION):
            continue
        try:
            project_id, node_id, round_ = parse_approval_value(str(action.get("value", "")))
        except ValueError:
            return None
        return kind == APPROVE_ACTION, project_id, node_id, round_, user_id, user_name
    return None


async def _decide(
    svc: Services,
    tenant_id: str,
    project_id: str,
    node_id: str,
    round_: int | None,
    approved: bool,
    user_id: str,
    user_name: str,
) -> str:
    """Signals the workflow like the API's approve/reject does: the workflow records the
    decision, so the store changes only once the engine holds it."""
    pending = await asyncio.to_thread(
        svc.store.list_reviews, "pending", tenant_id, project_id=project_id
    )
    gate = next((review for review in pending if review.node_id == node_id), None)
    if gate is None:
        return f"No pending review for {node_id} of project {project_id}: already decided?"
    if round_ is not None and round_ != gate.attempt:
        return (
            f"That button was for review round {round_} of {node_id}, which is decided; "
            f"round {gate.attempt} awaits a decision in a newer message."
        )
    decision = ReviewDecision(
        approved=approved,
        comment=f"via Slack by {user_name}",
        reviewer=f"slack:{user_id}",
        round=gate.attempt,
    )
    try:
        await send_review(svc.engine(), project_id, node_id, decision)
    except EngineUnavailable:
        return "The engine is not connected, so the decision was not recorded: try again soon."
    except RPCError as exc:
        return f"The project's workflow did not take the decision ({exc.message}): try the API."
    except SomaError as exc:
        return f"The decision was not recorded: {exc}"
    verb = "Approved" if approved else "Rejected"
    return f"{verb} {node_id} of project {project_id} (round {gate.attempt}) by {user_name}."
