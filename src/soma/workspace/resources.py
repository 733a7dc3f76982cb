"""Per-project resources: provisioned through the adapters, recorded, torn down with the project.

Kinds (see ``docs/resources.md``):

- ``git.local``: a bare repository at ``$SOMA_HOME/repos/<tenant>/<project>.git``, added as the
  workspace's ``origin`` so ``git.push`` publishes there;
- ``github.repo``: ``owner/name``, created with the GitHub adapter's client and the tenant's
  ``github.token``; teardown deletes it, or archives it when GitHub refuses the delete;
- ``aws.s3_bucket``: created with the AWS adapter's boto3 client and the tenant's AWS secrets;
  teardown empties and deletes it.

Every request is recorded in the store under ``(tenant, project, kind, name)``, which is what
makes both directions idempotent: a resource already ``provisioned`` is not created again, one
already ``torn_down`` is not touched again. A failure is recorded with its reason and raised as
a :class:`ResourceError` naming the resource. A resource is only ever removed if this manager
created it: one that already existed is refused at provisioning, never adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from soma.errors import SomaError, WorkspaceError
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store
from soma.store.resources import ResourceRecord
from soma.tools.adapters.aws import DEFAULT_REGION, AwsCredentials, s3_client, tenant_credentials
from soma.tools.adapters.github import GitHubApi
from soma.tools.base import SecretReader
from soma.workspace.git import run_git
from soma.workspace.repos import local_repo_path

ResourceKind = Literal["git.local", "github.repo", "aws.s3_bucket"]
RESOURCE_KINDS: tuple[str, ...] = ("git.local", "github.repo", "aws.s3_bucket")
AWS_TIMEOUT_S = 30.0

_REMOTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_GH_PART = r"[A-Za-z0-9_.-]{1,100}"
_GH_REPO = re.compile(rf"^({_GH_PART})/({_GH_PART})$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ResourceError(SomaError):
    """A project resource could not be provisioned or torn down."""


class ResourceRequest(BaseModel):
    """One resource a project asks for, e.g. ``{"kind": "github.repo", "name": "acme/todo"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ResourceKind = Field(description="git.local, github.repo or aws.s3_bucket.")
    name: str = Field(
        default="",
        max_length=255,
        description="github.repo: 'owner/name'; aws.s3_bucket: the bucket name; git.local: the "
        "remote name (default 'origin').",
    )

    @model_validator(mode="after")
    def _check_name(self) -> ResourceRequest:
        if self.kind == "git.local":
            if self.name and not _REMOTE.fullmatch(self.name):
                raise ValueError(f"invalid git remote name {self.name!r}: use letters, digits")
        elif self.kind == "github.repo":
            match = _GH_REPO.fullmatch(self.name)
            if match is None or {".", ".."} & set(match.groups()):
                raise ValueError(f"github.repo needs 'owner/name', got {self.name!r}")
        elif not _BUCKET.fullmatch(self.name) or ".." in self.name:
            raise ValueError(
                f"invalid S3 bucket name {self.name!r}: 3-63 lowercase letters, digits, '.', '-'"
            )
        return self

    @property
    def key(self) -> str:
        """The name recorded in the store (``origin`` when a git.local request gives none)."""
        return self.name or ("origin" if self.kind == "git.local" else self.name)

    @classmethod
    def parse(cls, spec: str) -> ResourceRequest:
        """``kind[:name]`` as `soma run --resource` takes it: ``aws.s3_bucket:my-bucket``."""
        kind, _, name = spec.partition(":")
        return cls.model_validate({"kind": kind, "name": name})


@dataclass(frozen=True)
class Target:
    """What a provisioner acts for: one resource of one project of one tenant."""

    tenant_id: str
    project_id: str
    name: str
    home: Path
    workspace_path: Path
    secrets: SecretReader


@dataclass(frozen=True)
class Provisioned:
    location: str
    details: dict[str, Any] = field(default_factory=dict)


class Provisioner(Protocol):
    """Creates and removes one kind of resource. Both calls may raise; the manager records."""

    kind: str

    async def provision(self, target: Target) -> Provisioned: ...

    async def teardown(self, target: Target, location: str) -> str:
        """Remove the resource; return how (``removed``, ``deleted``, ``archived``, ``gone``)."""
        ...


class GitLocalProvisioner:
    kind = "git.local"

    async def provision(self, target: Target) -> Provisioned:
        return await asyncio.to_thread(self._provision, target)

    def _provision(self, target: Target) -> Provisioned:
        path = local_repo_path(target.home, target.tenant_id, target.project_id, target.name)
        if not (path / "HEAD").is_file():
            path.mkdir(parents=True, exist_ok=True)
            run_git(path, ["init", "--quiet", "--bare", "--initial-branch=main"])
        try:
            run_git(target.workspace_path, ["remote", "add", target.name, str(path)])
        except WorkspaceError:  # the remote exists (a retry): point it here
            run_git(target.workspace_path, ["remote", "set-url", target.name, str(path)])
        return Provisioned(str(path), {"remote": target.name})

    async def teardown(self, target: Target, location: str) -> str:
        return await asyncio.to_thread(self._teardown, target, location)

    def _teardown(self, target: Target, location: str) -> str:
        if (target.workspace_path / ".git").is_dir():
            with contextlib.suppress(WorkspaceError):  # already removed
                run_git(target.workspace_path, ["remote", "remove", target.name])
        path = Path(location)
        if not path.exists():
            return "gone"
        shutil.rmtree(path)
        return "removed"


class GitHubRepoProvisioner:
    kind = "github.repo"

    async def provision(self, target: Target) -> Provisioned:
        gh = GitHubApi.for_tenant(target.secrets, target.tenant_id)
        owner, repo = target.name.split("/", 1)
        status, user = await gh.request("GET", "/user")
        if status != 200 or not isinstance(user, dict):
            raise _github(gh.failure("reading the token's user", status, user).output)
        path = "/user/repos" if user.get("login") == owner else f"/orgs/{owner}/repos"
        payload = {
            "name": repo,
            "private": True,
            "description": f"SomaAgentHub project {target.project_id}",
        }
        status, body = await gh.request("POST", path, payload)
        if status != 201 or not isinstance(body, dict):
            raise _github(gh.failure(f"creating {target.name}", status, body).output)
        url = str(body.get("html_url") or f"{gh.base_url}/repos/{target.name}")
        details = {"full_name": body.get("full_name"), "clone_url": body.get("clone_url")}
        return Provisioned(url, details)

    async def teardown(self, target: Target, location: str) -> str:
        gh = GitHubApi.for_tenant(target.secrets, target.tenant_id)
        path = f"/repos/{target.name}"
        status, body = await gh.request("DELETE", path)
        if status == 204:
            return "deleted"
        if status == 404:
            return "gone"
        if status != 403:
            raise _github(gh.failure(f"deleting {target.name}", status, body).output)
        # Deleting needs the delete_repo scope; without it, archiving keeps the work read-only.
        status, body = await gh.request("PATCH", path, {"archived": True})
        if status != 200:
            raise _github(gh.failure(f"archiving {target.name}", status, body).output)
        return "archived"


def _github(message: str) -> ResourceError:
    return ResourceError(
        message.removeprefix("error: "),
        hint="check the tenant's github.token (scopes repo, delete_repo) and the owner's name",
    )


class S3BucketProvisioner:
    kind = "aws.s3_bucket"

    async def provision(self, target: Target) -> Provisioned:
        creds = tenant_credentials(target.secrets, target.tenant_id)
        return await asyncio.to_thread(_aws, creds, self._provision, creds, target.name)

    @staticmethod
    def _provision(creds: AwsCredentials, bucket: str) -> Provisioned:
        client = s3_client(creds, AWS_TIMEOUT_S)
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            pass  # absent (or not ours): create it; a name taken elsewhere fails just below
        else:
            raise ResourceError(
                f"bucket {bucket!r} already exists",
                hint="choose a new name: existing buckets are never adopted, so teardown can "
                "not delete data it did not create",
            )
        if creds.region == DEFAULT_REGION:
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": creds.region},  # type: ignore[typeddict-item]
            )
        return Provisioned(f"arn:aws:s3:::{bucket}", {"region": creds.region})

    async def teardown(self, target: Target, location: str) -> str:
        creds = tenant_credentials(target.secrets, target.tenant_id)
        return await asyncio.to_thread(_aws, creds, self._teardown, creds, target.name)

    @staticmethod
    def _teardown(creds: AwsCredentials, bucket: str) -> str:
        client = s3_client(creds, AWS_TIMEOUT_S)
        try:
            # Versions and delete markers too, or a versioned bucket would refuse deletion.
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                entries = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))
                    if "Key" in v and "VersionId" in v
                ]
                if entries:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": entries})  # type: ignore[typeddict-item]
            for listed in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in listed.get("Contents", []) if "Key" in o]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
            client.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                return "gone"
            raise
        return "deleted"


def _aws(creds: AwsCredentials, fn: Any, *args: Any) -> Any:
    """Run ``fn``; AWS failures become ResourceErrors with the credentials masked."""
    try:
        return fn(*args)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = creds.mask(str(error.get("Message", "")) or str(exc))
        raise ResourceError(
            f"AWS {code}: {message}",
            hint="check the tenant's aws.* secrets and the bucket name",
        ) from None
    except BotoCoreError as exc:
        raise ResourceError(
            f"AWS unreachable: {creds.mask(str(exc))}",
            hint="check the tenant's aws.endpoint_url and aws.region secrets",
        ) from None


DEFAULT_PROVISIONERS: tuple[Provisioner, ...] = (
    GitLocalProvisioner(),
    GitHubRepoProvisioner(),
    S3BucketProvisioner(),
)


class ResourceManager:
    """Provisions a project's resources, records them, and tears them down."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        vault: Vault,
        provisioners: Sequence[Provisioner] = DEFAULT_PROVISIONERS,
    ) -> None:
        self.store = store
        self.settings = settings
        self.vault = vault
        self.provisioners: Mapping[str, Provisioner] = {p.kind: p for p in provisioners}

    def _target(self, tenant_id: str, project_id: str, name: str) -> Target:
        return Target(
            tenant_id=tenant_id,
            project_id=project_id,
            name=name,
            home=self.settings.home,
            workspace_path=self.settings.workspaces_dir / project_id,
            secrets=self.vault.reader(tenant_id),
        )

    def _provisioner(self, kind: str) -> Provisioner:
        found = self.provisioners.get(kind)
        if found is None:
            raise ResourceError(
                f"unknown resource kind {kind!r}", hint=f"use one of {', '.join(RESOURCE_KINDS)}"
            )
        return found

    async def provision(
        self, tenant_id: str, project_id: str, requests: Sequence[ResourceRequest]
    ) -> list[ResourceRecord]:
        """Provision each request in order; stop at the first failure and raise it."""
        records = []
        for request in requests:
            kind, name = request.kind, request.key
            existing = await asyncio.to_thread(
                self.store.get_resource, tenant_id, project_id, kind, name
            )
            if existing is not None and existing.status == "provisioned":
                records.append(existing)
                continue
            try:
                done = await self._provisioner(kind).provision(
                    self._target(tenant_id, project_id, name)
                )
            except Exception as exc:
                reason = _reason(exc)
                await asyncio.to_thread(
                    self.store.record_resource,
                    tenant_id,
                    project_id,
                    kind,
                    name,
                    status="failed",
                    error=reason,
                    details={"failed_at": "provision"},
                )
                raise ResourceError(
                    f"could not provision {kind} '{name}' for project '{project_id}': {reason}",
                    hint=getattr(exc, "hint", None) or "fix the cause, then run the project again",
                ) from exc
            record = await asyncio.to_thread(
                self.store.record_resource,
                tenant_id,
                project_id,
                kind,
                name,
                status="provisioned",
                location=done.location,
                details={**done.details, "failed_at": None},
            )
            records.append(record)
        return records

    async def teardown(self, tenant_id: str, project_id: str) -> list[ResourceRecord]:
        """Tear down every resource of the project (newest first); return them all.

        Every resource is tried even when one fails; then a ResourceError names the failed ones
        (each also recorded as ``failed`` with its reason, and retried by the next teardown).
        """
        current = await asyncio.to_thread(
            self.store.list_resources, project_id, tenant_id=tenant_id
        )
        done: dict[int, ResourceRecord] = {}
        failures: list[str] = []
        for record in reversed(current):
            if record.status == "torn_down":
                done[record.id] = record
                continue
            if record.location is None:  # its provisioning failed: nothing of ours exists
                how = "nothing to remove"
            else:
                try:
                    how = await self._provisioner(record.kind).teardown(
                        self._target(tenant_id, project_id, record.name), record.location
                    )
                except Exception as exc:
                    reason = _reason(exc)
                    failures.append(f"{record.kind} '{record.name}': {reason}")
                    done[record.id] = await asyncio.to_thread(
                        self.store.record_resource,
                        tenant_id,
                        project_id,
                        record.kind,
                        record.name,
                        status="failed",
                        error=reason,
                        details={"failed_at": "teardown"},
                    )
                    continue
            done[record.id] = await asyncio.to_thread(
                self.store.record_resource,
                tenant_id,
                project_id,
                record.kind,
                record.name,
                status="torn_down",
                # A provisioning failure keeps its reason: it is why nothing was removed.
                error=record.error if record.location is None else None,
                details={"teardown": how, "failed_at": None},
            )
        if failures:
            raise ResourceError(
                f"could not tear down {len(failures)} resource(s) of project '{project_id}': "
                + "; ".join(failures),
                hint="fix the cause and tear down again; torn-down resources are skipped",
            )
        return [done[r.id] for r in current]


def _reason(exc: Exception) -> str:
    if isinstance(exc, SomaError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
