"""Slack tools: post a message, reply in a thread, ask a human to approve a review gate.

The approval message carries "Approve" / "Reject" buttons whose ``value`` holds only ids
(project, node, round). The gateway's Slack callback trusts the click because Slack signs it,
and re-checks those ids against the store's pending reviews of the tenant named in the callback
URL, so a forged or stale value can at worst point at a review that is not pending.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import Field

from soma.errors import ToolError
from soma.secrets import mask
from soma.tools.base import FunctionTool, ToolArgs, ToolContext, ToolResult, tool

DEFAULT_API_URL = "https://slack.com/api"
TOKEN_SECRET = "slack.bot_token"
API_URL_SECRET = "slack.api_url"
APPROVE_ACTION = "soma_review_approve"
REJECT_ACTION = "soma_review_reject"


class PostMessageArgs(ToolArgs):
    channel: str = Field(min_length=1, description="Channel id (C0123…) or name (#general).")
    text: str = Field(min_length=1, max_length=40_000, description="Message text (mrkdwn).")


class ReplyArgs(ToolArgs):
    channel: str = Field(min_length=1, description="Channel id of the message replied to.")
    thread_ts: str = Field(
        min_length=1, description="The `ts` of the thread's first message, as a post returned."
    )
    text: str = Field(min_length=1, max_length=40_000, description="Reply text (mrkdwn).")


class RequestApprovalArgs(ToolArgs):
    channel: str = Field(min_length=1, description="Channel id or name to ask in.")
    text: str = Field(
        min_length=1, max_length=2_900, description="What to approve and why, for the reviewer."
    )
    project_id: str = Field(min_length=1, max_length=128, description="The project under review.")
    node_id: str = Field(min_length=1, max_length=128, description="The plan node awaiting review.")
    round: int | None = Field(
        default=None,
        ge=0,
        description="Review round (0-based) the buttons decide; omit for the current one.",
    )


def approval_value(project_id: str, node_id: str, round: int | None) -> str:
    """The button ``value``: compact JSON the callback parses with :func:`parse_approval_value`."""
    return json.dumps({"p": project_id, "n": node_id, "r": round}, separators=(",", ":"))


def parse_approval_value(value: str) -> tuple[str, str, int | None]:
    """Inverse of :func:`approval_value`; raises ValueError on anything else."""
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("approval value is not an object")
    project_id, node_id, round_ = data.get("p"), data.get("n"), data.get("r")
    if not isinstance(project_id, str) or not isinstance(node_id, str):
        raise ValueError("approval value lacks project or node id")
    if round_ is not None and (not isinstance(round_, int) or isinstance(round_, bool)):
        raise ValueError("approval value has a non-integer round")
    return project_id, node_id, round_


def approval_blocks(args: RequestApprovalArgs) -> list[dict[str, Any]]:
    value = approval_value(args.project_id, args.node_id, args.round)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": args.text}},
        {
            "type": "actions",
            "block_id": "soma_review",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "text": {"type": "plain_text", "text": "Approve"},
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "text": {"type": "plain_text", "text": "Reject"},
                    "style": "danger",
                    "value": value,
                },
            ],
        },
    ]


def _credentials(ctx: ToolContext) -> tuple[str, str]:
    if ctx.secrets is None:
        raise ToolError(
            "Slack tools need the tenant's secrets, and none are available to this run",
            hint="run the agent through the worker, which gives tools the tenant's secret store",
        )
    token = ctx.secrets.get(TOKEN_SECRET)
    if not token:
        raise ToolError(
            f"the tenant has no Slack bot token (secret {TOKEN_SECRET!r})",
            hint=f"an admin sets it: PUT /api/v1/secrets/{TOKEN_SECRET} with the app's xoxb- token",
        )
    api_url = (ctx.secrets.get(API_URL_SECRET) or DEFAULT_API_URL).rstrip("/")
    return token, api_url


def _mask(text: str, token: str) -> str:
    """Upstreams may echo what they were sent; the token must never reach the model."""
    return mask(text, [token])


async def _call(ctx: ToolContext, method: str, payload: dict[str, Any]) -> ToolResult:
    """One Web API call. Slack answers HTTP 200 with ``ok: false`` for its own errors, so both
    that and transport failures become ``ok=False`` results the agent can react to."""
    token, api_url = _credentials(ctx)
    try:
        async with httpx.AsyncClient(timeout=min(ctx.timeout_s, 30.0)) as client:
            response = await client.post(
                f"{api_url}/{method}",
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        reason = _mask(f"{type(exc).__name__}: {exc}", token)
        return ToolResult(
            ok=False,
            output=f"Slack {method} failed: could not reach Slack ({reason})",
            data={"error": "unreachable"},
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ToolResult(
            ok=False,
            output=f"Slack {method} failed: HTTP {response.status_code} with no JSON answer",
            data={"error": f"http_{response.status_code}"},
        )
    if not body.get("ok"):
        error = _mask(str(body.get("error") or f"http_{response.status_code}"), token)
        return ToolResult(ok=False, output=f"Slack {method} failed: {error}", data={"error": error})
    ts = str(body.get("ts", ""))
    channel = str(body.get("channel", payload.get("channel", "")))
    return ToolResult(
        ok=True,
        output=_mask(f"posted to {channel} (ts {ts})", token),
        data={"channel": _mask(channel, token), "ts": _mask(ts, token)},
    )


@tool("slack.post_message", "Post a message to a Slack channel.", PostMessageArgs)
async def slack_post_message(args: PostMessageArgs, ctx: ToolContext) -> ToolResult:
    return await _call(ctx, "chat.postMessage", {"channel": args.channel, "text": args.text})


@tool("slack.reply", "Reply in the thread of a Slack message.", ReplyArgs)
async def slack_reply(args: ReplyArgs, ctx: ToolContext) -> ToolResult:
    payload = {"channel": args.channel, "thread_ts": args.thread_ts, "text": args.text}
    return await _call(ctx, "chat.postMessage", payload)


@tool(
    "slack.request_approval",
    "Ask in Slack for a human to approve or reject a node's pending review, with buttons that "
    "decide the review gate.",
    RequestApprovalArgs,
)
async def slack_request_approval(args: RequestApprovalArgs, ctx: ToolContext) -> ToolResult:
    payload = {"channel": args.channel, "text": args.text, "blocks": approval_blocks(args)}
    return await _call(ctx, "chat.postMessage", payload)


SLACK_TOOLS: tuple[FunctionTool[Any], ...] = (
    slack_post_message,
    slack_reply,
    slack_request_approval,
)
