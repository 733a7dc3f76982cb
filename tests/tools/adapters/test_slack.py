from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.errors import ToolError
from soma.tools.adapters.slack import (
    APPROVE_ACTION,
    REJECT_ACTION,
    SLACK_TOOLS,
    parse_approval_value,
    slack_post_message,
    slack_reply,
    slack_request_approval,
)
from soma.tools.base import ToolContext, ToolResult
from soma.tools.sandbox import SubprocessSandbox
from soma.workspace import AgentIdentity, Workspace
from tests.gateway.conftest import serve_in_thread
from tests.tools.adapters.fake_slack import TOKEN, FakeSlack


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@pytest.fixture
def fake() -> Iterator[tuple[FakeSlack, str]]:
    slack = FakeSlack()
    url, stop = serve_in_thread(slack.app())
    try:
        yield slack, url
    finally:
        stop()


def _ctx(tmp_path: Path, secrets: dict[str, str] | None) -> ToolContext:
    return ToolContext(
        Workspace.open(tmp_path / "ws", "proj"),
        SubprocessSandbox(),
        AgentIdentity(persona="developer", capsule="notify", run_id="r-1"),
        timeout_s=10,
        tenant_id="acme",
        secrets=None if secrets is None else Secrets(secrets),
    )


@pytest.fixture
def ctx(tmp_path: Path, fake: tuple[FakeSlack, str]) -> ToolContext:
    return _ctx(tmp_path, {"slack.bot_token": TOKEN, "slack.api_url": fake[1]})


def _no_token(result: ToolResult) -> None:
    assert TOKEN not in result.output
    assert TOKEN not in json.dumps(result.data)


def test_exports_the_three_tools() -> None:
    assert [t.spec.name for t in SLACK_TOOLS] == [
        "slack.post_message",
        "slack.reply",
        "slack.request_approval",
    ]


async def test_post_message(ctx: ToolContext, fake: tuple[FakeSlack, str]) -> None:
    result = await slack_post_message({"channel": "C001", "text": "build is green"}, ctx)
    assert result.ok
    assert result.data is not None
    assert result.data["channel"] == "C001"
    assert result.data["ts"] == fake[0].messages[0]["ts"]
    assert fake[0].messages[0]["text"] == "build is green"
    assert fake[0].auth_headers == [f"Bearer {TOKEN}"]
    _no_token(result)


async def test_reply_is_threaded(ctx: ToolContext, fake: tuple[FakeSlack, str]) -> None:
    first = await slack_post_message({"channel": "C001", "text": "root"}, ctx)
    assert first.data is not None
    reply = await slack_reply(
        {"channel": "C001", "thread_ts": first.data["ts"], "text": "in thread"}, ctx
    )
    assert reply.ok
    assert fake[0].messages[1]["thread_ts"] == first.data["ts"]
    assert fake[0].messages[1]["text"] == "in thread"
    _no_token(reply)


async def test_request_approval_has_two_buttons(
    ctx: ToolContext, fake: tuple[FakeSlack, str]
) -> None:
    args = {"channel": "C002", "text": "Merge the login page?", "project_id": "p-1", "node_id": "n"}
    result = await slack_request_approval({**args, "round": 2}, ctx)
    assert result.ok
    _no_token(result)
    message = fake[0].messages[0]
    assert message["text"] == "Merge the login page?"
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    buttons = actions["elements"]
    assert [b["action_id"] for b in buttons] == [APPROVE_ACTION, REJECT_ACTION]
    assert [b["text"]["text"] for b in buttons] == ["Approve", "Reject"]
    assert {parse_approval_value(b["value"]) for b in buttons} == {("p-1", "n", 2)}


@pytest.mark.parametrize(
    ("secrets_token", "channel", "error"),
    [(TOKEN, "C404", "channel_not_found"), ("xoxb-wrong", "C001", "invalid_auth")],
)
async def test_slack_errors_are_failed_results(
    tmp_path: Path, fake: tuple[FakeSlack, str], secrets_token: str, channel: str, error: str
) -> None:
    ctx = _ctx(tmp_path, {"slack.bot_token": secrets_token, "slack.api_url": fake[1]})
    result = await slack_post_message({"channel": channel, "text": "hi"}, ctx)
    assert not result.ok
    assert error in result.output
    assert result.data == {"error": error}
    assert secrets_token not in result.output
    assert fake[0].messages == []


async def test_unreachable_slack_is_a_failed_result(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"slack.bot_token": TOKEN, "slack.api_url": "http://127.0.0.1:9"})
    result = await slack_post_message({"channel": "C001", "text": "hi"}, ctx)
    assert not result.ok
    assert "could not reach Slack" in result.output
    _no_token(result)


async def test_missing_credentials_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"slack\.bot_token"):
        await slack_post_message({"channel": "C001", "text": "hi"}, _ctx(tmp_path, {}))
    with pytest.raises(ToolError, match="secrets"):
        await slack_post_message({"channel": "C001", "text": "hi"}, _ctx(tmp_path, None))
