from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from soma.tools import ToolContext, ToolRegistry
from soma.tools.adapters.github import GITHUB_TOOLS
from soma.tools.base import ToolResult
from soma.tools.sandbox import SubprocessSandbox
from soma.workspace import Workspace
from tests.tools.adapters.fake_github import TOKEN, FakeGitHub, create_app, serve_in_thread
from tests.tools.conftest import AGENT


class DictSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeGitHub, str]]:
    state = FakeGitHub()
    url, stop = serve_in_thread(create_app(state))
    yield state, url
    stop()


@pytest.fixture
def gh(fake: tuple[FakeGitHub, str]) -> FakeGitHub:
    state, _ = fake
    state.repos.clear()
    state.requests.clear()
    state.add_repo("acme", "widgets")
    return state


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry(GITHUB_TOOLS)


def make_ctx(workspace: Workspace, secrets: dict[str, str] | None) -> ToolContext:
    return ToolContext(
        workspace,
        SubprocessSandbox(),
        AGENT,
        tenant_id="acme-co",
        secrets=DictSecrets(secrets) if secrets is not None else None,
    )


@pytest.fixture
def ctx(workspace: Workspace, fake: tuple[FakeGitHub, str]) -> ToolContext:
    return make_ctx(workspace, {"github.token": TOKEN, "github.api_url": fake[1]})


def assert_no_token(res: ToolResult) -> None:
    assert TOKEN not in res.model_dump_json()


REPO = {"owner": "acme", "repo": "widgets"}


async def test_get_repo(reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub) -> None:
    res = await reg.call("github.get_repo", REPO, ctx)
    assert res.ok, res.output
    assert "acme/widgets" in res.output
    assert "default branch main" in res.output
    assert res.data is not None
    assert res.data["default_branch"] == "main"
    _, _, headers = gh.requests[-1]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert_no_token(res)


async def test_full_flow_branch_file_pr_comment_merge(
    reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub
) -> None:
    repo = gh.repos[("acme", "widgets")]
    results: list[ToolResult] = []

    res = await reg.call("github.create_branch", {**REPO, "branch": "feature"}, ctx)
    results.append(res)
    assert res.ok, res.output
    assert repo.branches["feature"] == repo.branches["main"]

    args = {
        **REPO,
        "path": "docs/a b.md",
        "content": "hello\n",
        "message": "add",
        "branch": "feature",
    }
    res = await reg.call("github.put_file", args, ctx)
    results.append(res)
    assert res.ok, res.output
    assert res.output.startswith("created docs/a b.md on feature")
    assert repo.files[("feature", "docs/a b.md")][0] == "hello\n"
    assert repo.branches["feature"] == res.data["commit"]  # type: ignore[index]

    res = await reg.call("github.put_file", {**args, "content": "bye\n"}, ctx)
    results.append(res)
    assert res.ok, res.output
    assert res.output.startswith("updated docs/a b.md")
    assert repo.files[("feature", "docs/a b.md")][0] == "bye\n"

    res = await reg.call("github.create_issue", {**REPO, "title": "Bug", "body": "broken"}, ctx)
    results.append(res)
    assert res.ok
    assert res.output == "created issue #1: https://github.test/acme/widgets/issues/1"
    assert repo.issues[1]["title"] == "Bug"

    res = await reg.call("github.open_pr", {**REPO, "title": "Feature", "head": "feature"}, ctx)
    results.append(res)
    assert res.ok, res.output
    assert "opened PR #2 (feature -> main): https://github.test/acme/widgets/pull/2" in res.output
    assert repo.issues[2]["base"] == {"ref": "main"}

    res = await reg.call("github.comment", {**REPO, "number": 2, "body": "LGTM"}, ctx)
    results.append(res)
    assert res.ok, res.output
    assert repo.comments[-1]["issue"] == 2
    assert repo.comments[-1]["body"] == "LGTM"

    res = await reg.call("github.merge_pr", {**REPO, "number": 2, "method": "squash"}, ctx)
    results.append(res)
    assert res.ok, res.output
    assert repo.issues[2]["merged"] is True
    assert repo.branches["main"] == res.data["sha"]  # type: ignore[index]

    res = await reg.call("github.merge_pr", {**REPO, "number": 2}, ctx)
    results.append(res)
    assert not res.ok
    assert "GitHub 405: Pull Request is not mergeable" in res.output

    for r in results:
        assert_no_token(r)


async def test_missing_token_says_how_to_set_it(
    reg: ToolRegistry, workspace: Workspace, gh: FakeGitHub
) -> None:
    for secrets in (None, {}):
        res = await reg.call("github.get_repo", REPO, make_ctx(workspace, secrets))
        assert not res.ok
        assert "soma secrets set acme-co github.token" in res.output
    assert gh.requests == []


async def test_bad_token_is_401_without_leaking_it(
    reg: ToolRegistry, workspace: Workspace, fake: tuple[FakeGitHub, str], gh: FakeGitHub
) -> None:
    bad = "ghp_wrongTOKENwrongTOKEN"
    ctx = make_ctx(workspace, {"github.token": bad, "github.api_url": fake[1]})
    res = await reg.call("github.create_issue", {**REPO, "title": "x"}, ctx)
    assert not res.ok
    assert "GitHub 401: Bad credentials" in res.output
    assert res.data is not None
    assert res.data["status"] == 401
    assert bad not in res.model_dump_json()
    assert gh.repos[("acme", "widgets")].issues == {}


async def test_duplicate_branch_is_422(reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub) -> None:
    args = {**REPO, "branch": "dup", "base": "main"}
    assert (await reg.call("github.create_branch", args, ctx)).ok
    res = await reg.call("github.create_branch", args, ctx)
    assert not res.ok
    assert "GitHub 422: Reference already exists" in res.output
    assert_no_token(res)


async def test_not_found_and_validation_details(
    reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub
) -> None:
    res = await reg.call("github.get_repo", {"owner": "acme", "repo": "nope"}, ctx)
    assert not res.ok
    assert "GitHub 404: Not Found" in res.output
    res = await reg.call("github.open_pr", {**REPO, "title": "t", "head": "main"}, ctx)
    assert not res.ok
    assert "Validation Failed (No commits between main and main)" in res.output


async def test_echoed_token_is_masked(reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub) -> None:
    res = await reg.call("github.create_issue", {**REPO, "title": f"leak {TOKEN}"}, ctx)
    assert res.ok
    # The fake stored it, but the tool's result never shows it.
    assert gh.repos[("acme", "widgets")].issues[1]["title"] == f"leak {TOKEN}"
    assert_no_token(res)


@pytest.mark.parametrize(
    ("args", "where"),
    [
        ({"owner": "..", "repo": "x"}, "owner"),
        ({"owner": "a/b", "repo": "x"}, "owner"),
        ({**REPO, "path": "../etc", "content": "", "message": "m", "branch": "b"}, "path"),
    ],
)
async def test_path_injection_is_refused(
    reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub, args: dict[str, str], where: str
) -> None:
    name = "github.put_file" if "path" in args else "github.get_repo"
    res = await reg.call(name, args, ctx)
    assert not res.ok
    assert where in res.output
    assert gh.requests == []


async def test_unreachable_api_is_tool_error(reg: ToolRegistry, workspace: Workspace) -> None:
    ctx = make_ctx(workspace, {"github.token": TOKEN, "github.api_url": "http://127.0.0.1:9"})
    res = await reg.call("github.get_repo", REPO, ctx)
    assert not res.ok
    assert "could not reach GitHub" in res.output
    assert_no_token(res)


async def test_the_token_never_reaches_the_logs(
    reg: ToolRegistry, ctx: ToolContext, gh: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged while calling GitHub, at every level and by every library on the way
    (httpx, httpcore, ours), is free of the token — success and failure alike."""
    caplog.set_level(logging.DEBUG)
    await reg.call("github.get_repo", REPO, ctx)
    await reg.call("github.merge_pr", {**REPO, "number": 99}, ctx)
    assert caplog.records, "the test must see the libraries' debug logging"
    assert TOKEN not in caplog.text
