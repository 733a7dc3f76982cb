"""The workspace manager's git.local resource end to end: a real bare repository, the
workspace's origin, a push through the git.push tool, teardown, idempotency and failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from soma.errors import SomaError
from soma.orchestrator.launch import provision_resources
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from soma.tools import ToolContext
from soma.tools.adapters.git_push import git_push
from soma.tools.sandbox import SubprocessSandbox
from soma.workspace import AgentIdentity, Workspace
from soma.workspace.git import run_git
from soma.workspace.resources import ResourceError, ResourceManager, ResourceRequest

AGENT = AgentIdentity(persona="developer", capsule="implement-feature", run_id="r-1")
TENANT = "acme"
PROJECT = "todo-cli-abc123"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, secret_key=SecretStr("k" * 40), temporal_address=None)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.store_url) as store:
        yield store


@pytest.fixture
def manager(store: Store, settings: Settings) -> ResourceManager:
    return ResourceManager(store, settings, Vault(store, b"instance-secret-" * 4))


@pytest.fixture
def workspace(settings: Settings) -> Workspace:
    return Workspace.open(settings.workspaces_dir, PROJECT)


GIT_LOCAL = ResourceRequest(kind="git.local")


async def test_git_local_is_the_workspace_origin_and_receives_pushes(
    manager: ResourceManager, workspace: Workspace, settings: Settings
) -> None:
    [record] = await manager.provision(TENANT, PROJECT, [GIT_LOCAL])
    bare = settings.home / "repos" / TENANT / f"{PROJECT}.git"
    assert record.status == "provisioned"
    assert record.kind == "git.local"
    assert record.name == "origin"
    assert record.location == str(bare)
    assert run_git(bare, ["rev-parse", "--is-bare-repository"]).strip() == "true"
    assert run_git(workspace.path, ["remote", "get-url", "origin"]).strip() == str(bare)

    workspace.resolve("README.md").write_text("# todo\n")
    sha = workspace.commit("Add README", AGENT)
    ctx = ToolContext(workspace, SubprocessSandbox(), AGENT, timeout_s=30, tenant_id=TENANT)
    pushed = await git_push({}, ctx)
    assert pushed.ok, pushed.output
    assert run_git(bare, ["rev-parse", "refs/heads/main"]).strip() == sha


async def test_provisioning_twice_does_not_create_twice(
    manager: ResourceManager, workspace: Workspace, store: Store, settings: Settings
) -> None:
    [first] = await manager.provision(TENANT, PROJECT, [GIT_LOCAL])
    marker = Path(first.location or "") / "description"
    await asyncio.to_thread(marker.write_text, "kept\n")
    [again] = await manager.provision(TENANT, PROJECT, [ResourceRequest(kind="git.local")])
    assert again == first
    assert await asyncio.to_thread(marker.read_text) == "kept\n"
    assert len(store.list_resources(PROJECT, tenant_id=TENANT)) == 1


async def test_teardown_removes_it_and_is_a_no_op_the_second_time(
    manager: ResourceManager, workspace: Workspace
) -> None:
    [record] = await manager.provision(TENANT, PROJECT, [GIT_LOCAL])
    [gone] = await manager.teardown(TENANT, PROJECT)
    assert gone.status == "torn_down"
    assert gone.torn_down_at is not None
    assert (gone.details or {}).get("teardown") == "removed"
    assert not await asyncio.to_thread(Path(record.location or "").exists)
    assert "origin" not in run_git(workspace.path, ["remote"]).split()

    [still] = await manager.teardown(TENANT, PROJECT)
    assert still == gone
    assert await manager.teardown(TENANT, "no-such-project") == []


async def test_failure_is_recorded_and_names_the_resource(
    manager: ResourceManager, workspace: Workspace, store: Store
) -> None:
    request = ResourceRequest(kind="github.repo", name="acme/todo-cli")
    with pytest.raises(ResourceError) as caught:
        await manager.provision(TENANT, PROJECT, [request])
    assert "github.repo 'acme/todo-cli'" in str(caught.value)
    assert "no GitHub token" in str(caught.value)
    assert "soma secrets set acme github.token" in (caught.value.hint or "")
    [failed] = store.list_resources(PROJECT, tenant_id=TENANT)
    assert failed.status == "failed"
    assert failed.location is None
    assert "no GitHub token" in (failed.error or "")
    # Nothing was created, so tearing it down touches nothing.
    [after] = await manager.teardown(TENANT, PROJECT)
    assert after.status == "torn_down"


async def test_a_failed_launch_rolls_back_and_records_the_project_failed(
    store: Store, settings: Settings, workspace: Workspace
) -> None:
    record = store.create_project(PROJECT, "a todo CLI", tenant_id=TENANT, status="running")
    requests = [GIT_LOCAL, ResourceRequest(kind="aws.s3_bucket", name="todo-artifacts")]
    with pytest.raises(SomaError, match=r"aws\.s3_bucket 'todo-artifacts'"):
        await provision_resources(
            settings, store, record, requests, vault=Vault(store, b"instance-secret-" * 4)
        )
    project = store.get_project(PROJECT, TENANT)
    assert project.status == "failed"
    assert "no AWS credentials" in (project.error or "")
    statuses = {r.kind: r.status for r in store.list_resources(PROJECT, tenant_id=TENANT)}
    assert statuses == {"git.local": "torn_down", "aws.s3_bucket": "torn_down"}
    assert not (settings.home / "repos" / TENANT / f"{PROJECT}.git").exists()


@pytest.mark.parametrize(
    ("spec", "kind", "key"),
    [
        ("git.local", "git.local", "origin"),
        ("github.repo:acme/todo-cli", "github.repo", "acme/todo-cli"),
        ("aws.s3_bucket:my-bucket", "aws.s3_bucket", "my-bucket"),
    ],
)
def test_requests_parse_from_the_cli_form(spec: str, kind: str, key: str) -> None:
    request = ResourceRequest.parse(spec)
    assert (request.kind, request.key) == (kind, key)


@pytest.mark.parametrize(
    "spec", ["svn.repo:x", "github.repo:no-slash", "github.repo:a/..", "aws.s3_bucket:Bad_Name"]
)
def test_bad_requests_are_refused(spec: str) -> None:
    with pytest.raises(ValidationError):
        ResourceRequest.parse(spec)
