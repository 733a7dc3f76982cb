"""Turning a goal into a started project: plan it, open its workspace, record it, start it.

Shared by `soma run` and the gateway's ``POST /api/v1/projects`` so that both create projects
the same way; only how progress is shown differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from temporalio.client import Client

from soma.errors import SomaError
from soma.identity.secret import load_secret_key
from soma.metering.budgets import ensure_budget
from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.orchestrator.projects import start_project, workflow_id
from soma.orchestrator.types import ProjectParams
from soma.planner import PlanResult, make_plan
from soma.secrets import Vault
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import DEFAULT_TENANT, ProjectRecord, Store
from soma.store.resources import ResourceRecord
from soma.workspace import Workspace
from soma.workspace.resources import ResourceManager, ResourceRequest

PlannerMode = Literal["auto", "model", "template"]
LOCAL_TOO_WEAK = (
    "the embedded model is too small to plan reliably (0 valid plans in 3 attempts, measured; "
    "docs/models.md) — pass --planner model to try it anyway"
)


def new_project_id(goal: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", goal.lower()).strip("-")[:40].strip("-") or "project"
    return f"{slug}-{uuid.uuid4().hex[:6]}"


async def plan_goal(
    goal: str, library: Library, model_spec: str, mode: PlannerMode, settings: Settings
) -> PlanResult:
    """The embedded model is measured too weak to plan, so ``auto`` skips straight to the
    template planner for it; any other model is tried first."""
    if mode == "auto" and model_spec.split(":")[0] == "local":
        result = await make_plan(goal, library, None, mode="template")
        return result.model_copy(update={"reason": LOCAL_TOO_WEAK})
    model: Model | None = None if mode == "template" else resolve_model(model_spec, settings)
    return await make_plan(goal, library, model, mode=mode)


@dataclass(frozen=True)
class PreparedProject:
    record: ProjectRecord
    planned: PlanResult
    params: ProjectParams


def record_project(
    settings: Settings,
    store: Store,
    goal: str,
    planned: PlanResult,
    *,
    model_spec: str,
    concurrency: int,
    max_tokens: int | None,
    tenant_id: str = DEFAULT_TENANT,
) -> PreparedProject:
    """Open the project's workspace and record it as running, ready for its workflow; refused
    (QuotaExceeded) when the tenant's monthly budget is used up, before anything is created."""
    ensure_budget(store, tenant_id)
    project_id = new_project_id(goal)
    workspace = Workspace.open(settings.workspaces_dir, project_id)
    record = store.create_project(
        project_id=project_id,
        goal=goal,
        tenant_id=tenant_id,
        status="running",
        planner=planned.planner,
        plan=planned.plan.model_dump(mode="json"),
        workflow_id=workflow_id(project_id),
        workspace_path=str(workspace.path),
        model=model_spec,
    )
    params = ProjectParams(
        project_id=project_id,
        goal=goal,
        plan=planned.plan,
        model=model_spec,
        concurrency=concurrency,
        max_project_tokens=max_tokens,
    )
    return PreparedProject(record, planned, params)


async def provision_resources(
    settings: Settings,
    store: Store,
    record: ProjectRecord,
    requests: Sequence[ResourceRequest],
    *,
    vault: Vault | None = None,
) -> list[ResourceRecord]:
    """Provision the project's resources after its workspace exists, before its workflow
    starts. On a failure the resources already provisioned are torn down again, the project is
    recorded as failed with the reason, and the error is raised: no workflow is ever started
    for a project whose resources are missing."""
    if not requests:
        return []
    manager = ResourceManager(store, settings, vault or Vault(store, load_secret_key(settings)))
    try:
        return await manager.provision(record.tenant_id, record.id, requests)
    except SomaError as exc:
        # A failed rollback is recorded on its resource, and `soma teardown` retries it.
        with contextlib.suppress(SomaError):
            await manager.teardown(record.tenant_id, record.id)
        await asyncio.to_thread(
            store.update_project,
            record.id,
            tenant_id=record.tenant_id,
            status="failed",
            error=f"provisioning failed: {exc.message}",
        )
        raise


async def launch_project(
    client: Client,
    settings: Settings,
    store: Store,
    library: Library,
    goal: str,
    *,
    model_spec: str,
    planner: PlannerMode = "auto",
    concurrency: int = 3,
    max_tokens: int | None = None,
    tenant_id: str = DEFAULT_TENANT,
    resources: Sequence[ResourceRequest] = (),
    vault: Vault | None = None,
) -> PreparedProject:
    """Plan, record, provision and start a project; returns once its workflow has started. A
    tenant over its monthly budget is refused before planning, which may itself call a model;
    a resource that cannot be provisioned fails the project before its workflow starts."""
    await asyncio.to_thread(ensure_budget, store, tenant_id)
    planned = await plan_goal(goal, library, model_spec, planner, settings)
    prepared = record_project(
        settings,
        store,
        goal,
        planned,
        model_spec=model_spec,
        concurrency=concurrency,
        max_tokens=max_tokens,
        tenant_id=tenant_id,
    )
    await provision_resources(settings, store, prepared.record, resources, vault=vault)
    await start_project(client, settings, prepared.params)
    return prepared
