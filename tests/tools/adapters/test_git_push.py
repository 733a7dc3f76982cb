from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from soma.tools import ToolContext, ToolRegistry
from soma.tools.adapters.git_push import GIT_PUSH_TOOLS
from soma.tools.sandbox import SubprocessSandbox
from soma.workspace import Workspace
from tests.tools.conftest import AGENT

TOKEN = "ghp_pushTOKEN0123456789"


class DictSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(path))
    return path


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry(GIT_PUSH_TOOLS)


def make_ctx(workspace: Workspace, secrets: dict[str, str]) -> ToolContext:
    return ToolContext(
        workspace, SubprocessSandbox(), AGENT, tenant_id="acme-co", secrets=DictSecrets(secrets)
    )


async def test_push_current_branch_to_bare_repo(
    reg: ToolRegistry, workspace: Workspace, bare: Path
) -> None:
    (workspace.path / "a.txt").write_text("one\n")
    sha = workspace.commit("add a", AGENT)
    ctx = make_ctx(workspace, {"git.remote_url": str(bare), "github.token": TOKEN})
    res = await reg.call("git.push", {}, ctx)
    assert res.ok, res.output
    assert res.data == {"branch": "main", "remote": "the configured remote", "sha": sha}
    assert git(bare, "rev-parse", "refs/heads/main") == sha
    assert git(bare, "show", f"{sha}:a.txt") == "one"
    assert TOKEN not in res.model_dump_json()


async def test_push_named_branch_via_file_url(
    reg: ToolRegistry, workspace: Workspace, bare: Path
) -> None:
    git(workspace.path, "branch", "feature")
    ctx = make_ctx(workspace, {"git.remote_url": f"file://{bare}"})
    res = await reg.call("git.push", {"branch": "feature"}, ctx)
    assert res.ok, res.output
    assert git(bare, "rev-parse", "refs/heads/feature") == workspace.head()


async def test_push_to_bad_remote_fails(
    reg: ToolRegistry, workspace: Workspace, tmp_path: Path
) -> None:
    ctx = make_ctx(workspace, {"git.remote_url": str(tmp_path / "missing.git")})
    res = await reg.call("git.push", {}, ctx)
    assert not res.ok
    assert "git push of main to the configured remote failed" in res.output
    assert str(tmp_path) in res.output  # git's own reason, for the agent to read


async def test_unknown_branch_fails(reg: ToolRegistry, workspace: Workspace, bare: Path) -> None:
    ctx = make_ctx(workspace, {"git.remote_url": str(bare)})
    res = await reg.call("git.push", {"branch": "nope"}, ctx)
    assert not res.ok
    assert "nope" in res.output


@pytest.mark.parametrize(
    "remote", ["/tmp/elsewhere.git", "file:///tmp/x.git", "ssh://h/x", "--upload-pack=x", "ext::sh"]
)
async def test_agent_cannot_choose_local_or_odd_remotes(
    reg: ToolRegistry, workspace: Workspace, remote: str
) -> None:
    res = await reg.call("git.push", {"remote": remote}, make_ctx(workspace, {}))
    assert not res.ok
    assert "cannot push to" in res.output


async def test_no_remote_says_how_to_configure(reg: ToolRegistry, workspace: Workspace) -> None:
    res = await reg.call("git.push", {}, make_ctx(workspace, {}))
    assert not res.ok
    assert "soma secrets set acme-co git.remote_url" in res.output


async def test_https_push_never_shows_token(reg: ToolRegistry, workspace: Workspace) -> None:
    # Nothing listens on port 9: the push fails, and neither the token nor the header it
    # travels in may appear in what the agent reads.
    ctx = make_ctx(
        workspace,
        {"github.token": TOKEN, "github.api_url": "https://127.0.0.1:9/api/v3"},
    )
    res = await reg.call("git.push", {"remote": "https://127.0.0.1:9/acme/widgets.git"}, ctx)
    assert not res.ok
    assert TOKEN not in res.model_dump_json()
    assert "Basic" not in res.output
