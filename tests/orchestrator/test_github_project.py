"""End to end: a project whose plan opens a pull request on a local GitHub-speaking server, and
merges it, each only after a human approves — adapters, tenant secrets, the constitution's
approval gates and the durable engine together."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from soma.identity.secret import load_secret_key
from soma.models.function import FunctionModel
from soma.models.types import Message, ModelRequest, ToolCall
from soma.orchestrator.projects import send_review
from soma.orchestrator.types import ReviewDecision
from soma.secrets import Vault
from soma.specs.models import Plan, PlanNode
from tests.tools.adapters.fake_github import TOKEN, FakeGitHub, create_app, serve_in_thread

from .conftest import Harness
from .test_governance import start
from .test_project_workflow import wait_for_node

pytestmark = pytest.mark.slow

PERSONA = """\
kind: persona
name: releaser
version: 1.0.0
role: release engineer
goal: Publish finished work for review on GitHub.
tools: ["github.*"]
"""
POLICY = """\
kind: constitution
name: pr-approval
version: 1.0.0
description: Opening a pull request for this capsule needs a human's go-ahead.
rules:
  - id: approve-open-pr
    effect: require_approval
    reason: A pull request is visible to the whole team; a human decides when it opens.
    action: {tool: github.open_pr}
"""
CAPSULE = """\
kind: capsule
name: open-pr
version: 1.0.0
description: Put a change on a branch, open a pull request for it and merge it.
persona: releaser
tools: [github.create_branch, github.put_file, github.open_pr, github.merge_pr]
policies: [pr-approval]
inputs:
  type: object
  properties: {change: {type: string}}
  required: [change]
outputs:
  type: object
  properties: {pr: {type: integer}}
  required: [pr]
instructions: Publish {{ change }} as a pull request and merge it once approved.
"""
STEPS = [
    ("github.create_branch", {"owner": "acme", "repo": "app", "branch": "soma/notes"}),
    (
        "github.put_file",
        {
            "owner": "acme",
            "repo": "app",
            "path": "NOTES.md",
            "content": "# Notes\n",
            "message": "Add release notes",
            "branch": "soma/notes",
        },
    ),
    ("github.open_pr", {"owner": "acme", "repo": "app", "title": "Notes", "head": "soma/notes"}),
    ("github.merge_pr", {"owner": "acme", "repo": "app", "number": 1}),
]


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeGitHub()
    state.add_repo("acme", "app")
    url, stop = serve_in_thread(create_app(state))
    try:
        yield state, url
    finally:
        stop()


def releaser(seen: list[ModelRequest]) -> FunctionModel:
    """Calls the four GitHub tools in order, one per step, then reports the PR number."""

    def reply(request: ModelRequest) -> Message:
        seen.append(request)
        done = sum(1 for m in request.messages if m.role == "tool")
        if done < len(STEPS):
            name, arguments = STEPS[done]
            return Message.assistant(
                tool_calls=[ToolCall(id=f"c{done}", name=name, arguments=arguments)]
            )
        return Message.assistant(json.dumps({"pr": 1}))

    return FunctionModel(reply)


def install_capsule(home: Path) -> None:
    library = home / "library"
    for relative, text in (
        ("personas/releaser.yaml", PERSONA),
        ("constitutions/pr-approval.yaml", POLICY),
        ("capsules/open-pr/capsule.yaml", CAPSULE),
    ):
        path = library / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def pulls(state: FakeGitHub) -> list[dict[str, object]]:
    return [item for item in state.repos[("acme", "app")].issues.values() if "merged" in item]


async def approve(harness: Harness, project_id: str, comment: str) -> None:
    """Approve the gate the node waits at (the caller has checked the world before)."""
    (gate,) = harness.store.list_reviews(status="pending", project_id=project_id)
    decision = ReviewDecision(approved=True, comment=comment, reviewer="test", round=gate.attempt)
    await send_review(harness.client, project_id, "pr", decision)
    for _ in range(200):
        if not harness.store.list_reviews(status="pending", project_id=project_id):
            return
        await asyncio.sleep(0.05)


async def test_a_project_opens_and_merges_a_pull_request_after_approvals(
    harness: Harness, github: tuple[FakeGitHub, str]
) -> None:
    state, url = github
    install_capsule(harness.settings.home)
    vault = Vault(harness.store, load_secret_key(harness.settings))
    vault.set("default", "github.token", TOKEN, actor="test")
    vault.set("default", "github.api_url", url, actor="test")
    seen: list[ModelRequest] = []
    harness.models["m"] = releaser(seen)
    plan = Plan(
        goal="publish notes",
        nodes=[PlanNode(id="pr", capsule="open-pr", inputs={"change": "the release notes"})],
    )
    project_id, result = await start(harness, plan)
    repo = state.repos[("acme", "app")]

    await wait_for_node(harness, project_id, "pr", "waiting_review")
    # The first gate is open_pr's: the branch and its file exist, the pull request does not.
    assert "soma/notes" in repo.branches
    assert ("soma/notes", "NOTES.md") in repo.files
    assert pulls(state) == []
    await approve(harness, project_id, "open it")

    await wait_for_node(harness, project_id, "pr", "waiting_review")
    # The second is the default constitution's merge gate: open, not merged yet.
    (pr,) = pulls(state)
    assert pr["merged"] is False
    await approve(harness, project_id, "merge it")
    final = await asyncio.wait_for(result, timeout=90)

    assert final.status == "succeeded", final.error
    (pr,) = pulls(state)
    assert pr["merged"] is True
    audit = harness.store.list_audit(project_id=project_id)
    gated = [(r.tool, r.rule_id) for r in audit if r.effect == "require_approval"]
    assert gated == [("github.open_pr", "approve-open-pr"), ("github.merge_pr", "approve-merge")]
    answers = [m.content or "" for r in seen for m in r.messages if m.role == "tool"]
    assert not any(TOKEN in a for a in answers)
