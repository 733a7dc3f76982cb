"""Project resources provisioned through the adapters' own clients, with the tenant's secrets
from a real vault: GitHub repositories on the fake GitHub server, S3 buckets on moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from soma.workspace import Workspace
from soma.workspace.resources import ResourceError, ResourceManager, ResourceRequest
from tests.tools.adapters.fake_github import TOKEN, FakeGitHub
from tests.tools.adapters.test_aws import KEY_ID, SECRET, moto_url
from tests.tools.adapters.test_github import fake

__all__ = ["fake", "moto_url"]  # fixtures shared with the adapters' own tests

TENANT = "acme"
PROJECT = "todo-cli-abc123"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, secret_key=SecretStr("k" * 40), temporal_address=None)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.store_url) as store:
        store.create_tenant(TENANT, "Acme")
        yield store


@pytest.fixture
def vault(store: Store) -> Vault:
    return Vault(store, b"instance-secret-" * 4)


@pytest.fixture
def manager(store: Store, settings: Settings, vault: Vault) -> ResourceManager:
    Workspace.open(settings.workspaces_dir, PROJECT)
    return ResourceManager(store, settings, vault)


@pytest.fixture
def gh(fake: tuple[FakeGitHub, str], vault: Vault) -> FakeGitHub:
    state, url = fake
    state.repos.clear()
    state.requests.clear()
    state.refuse_delete = False
    vault.set(TENANT, "github.token", TOKEN)
    vault.set(TENANT, "github.api_url", url)
    return state


async def test_github_repo_is_created_then_deleted(
    manager: ResourceManager, gh: FakeGitHub
) -> None:
    request = ResourceRequest(kind="github.repo", name="acme/todo-cli")
    [record] = await manager.provision(TENANT, PROJECT, [request])
    assert record.status == "provisioned"
    assert record.location == "https://github.test/acme/todo-cli"
    assert ("acme", "todo-cli") in gh.repos
    assert ("POST", "/orgs/acme/repos") in [(m, p) for m, p, _ in gh.requests]
    assert all(h["authorization"] == f"Bearer {TOKEN}" for _, _, h in gh.requests)

    # Idempotent: a second provisioning finds the record and calls nobody.
    calls = len(gh.requests)
    assert await manager.provision(TENANT, PROJECT, [request]) == [record]
    assert len(gh.requests) == calls

    [gone] = await manager.teardown(TENANT, PROJECT)
    assert gone.status == "torn_down"
    assert (gone.details or {}).get("teardown") == "deleted"
    assert ("acme", "todo-cli") not in gh.repos
    assert gh.requests[-1][:2] == ("DELETE", "/repos/acme/todo-cli")
    assert TOKEN not in gone.model_dump_json()


async def test_a_repo_of_the_tokens_own_user_is_archived_when_delete_is_refused(
    manager: ResourceManager, gh: FakeGitHub
) -> None:
    request = ResourceRequest(kind="github.repo", name=f"{gh.login}/scratch")
    await manager.provision(TENANT, PROJECT, [request])
    assert ("POST", "/user/repos") in [(m, p) for m, p, _ in gh.requests]
    gh.refuse_delete = True
    [record] = await manager.teardown(TENANT, PROJECT)
    assert record.status == "torn_down"
    assert (record.details or {}).get("teardown") == "archived"
    assert gh.repos[(gh.login, "scratch")].archived


async def test_an_existing_repo_is_refused_not_adopted(
    manager: ResourceManager, gh: FakeGitHub
) -> None:
    gh.add_repo("acme", "widgets")
    with pytest.raises(ResourceError, match=r"github\.repo 'acme/widgets'.*already exists"):
        await manager.provision(
            TENANT, PROJECT, [ResourceRequest(kind="github.repo", name="acme/widgets")]
        )
    await manager.teardown(TENANT, PROJECT)
    assert ("acme", "widgets") in gh.repos


@pytest.fixture
def s3(moto_url: str, vault: Vault) -> object:
    vault.set(TENANT, "aws.access_key_id", KEY_ID)
    vault.set(TENANT, "aws.secret_access_key", SECRET)
    vault.set(TENANT, "aws.endpoint_url", moto_url)
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )


async def test_s3_bucket_is_created_then_emptied_and_deleted(
    manager: ResourceManager, s3: object
) -> None:
    client: object = s3
    request = ResourceRequest(kind="aws.s3_bucket", name="todo-cli-artifacts")
    [record] = await manager.provision(TENANT, PROJECT, [request])
    assert record.status == "provisioned"
    assert record.location == "arn:aws:s3:::todo-cli-artifacts"
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]  # type: ignore[attr-defined]
    assert "todo-cli-artifacts" in names
    client.put_object(Bucket="todo-cli-artifacts", Key="out/report.txt", Body=b"done")  # type: ignore[attr-defined]

    [gone] = await manager.teardown(TENANT, PROJECT)
    assert gone.status == "torn_down"
    assert (gone.details or {}).get("teardown") == "deleted"
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]  # type: ignore[attr-defined]
    assert "todo-cli-artifacts" not in names
    assert await manager.teardown(TENANT, PROJECT) == [gone]


async def test_an_existing_bucket_is_refused_and_kept(manager: ResourceManager, s3: object) -> None:
    s3.create_bucket(Bucket="already-there")  # type: ignore[attr-defined]
    with pytest.raises(ResourceError, match=r"aws\.s3_bucket 'already-there'.*already exists"):
        await manager.provision(
            TENANT, PROJECT, [ResourceRequest(kind="aws.s3_bucket", name="already-there")]
        )
    await manager.teardown(TENANT, PROJECT)
    s3.head_bucket(Bucket="already-there")  # type: ignore[attr-defined]
