"""An embedded Temporal server, a store and an in-process worker, for orchestration benchmarks.

Everything lives in a throwaway ``SOMA_HOME``: the server's SQLite database, the store and the
project workspaces, so a benchmark run leaves nothing behind and never touches a user's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from soma.models.protocol import Model
from soma.orchestrator.projects import start_project
from soma.orchestrator.server import managed_temporal
from soma.orchestrator.types import ProjectParams, ProjectState
from soma.orchestrator.worker import build_worker
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import Plan
from soma.store import Store
from soma.store.tables import ActivityResult
from soma.tools import ToolRegistry


@dataclass
class Env:
    settings: Settings
    client: Client
    store: Store


@contextlib.contextmanager
def embedded_server(home: Path) -> Iterator[tuple[Settings, str]]:
    """A dev server for ``home`` (started, and stopped on exit), with the settings to use it."""
    settings = Settings(home=home, sandbox="subprocess", temporal_address=None)
    with managed_temporal(settings) as address:
        yield settings, address


@contextlib.asynccontextmanager
async def worker_env(
    settings: Settings,
    address: str,
    *,
    library: Library,
    registry: ToolRegistry,
    models: Callable[[str], Model],
    **worker_options: Any,
) -> AsyncIterator[Env]:
    """A client, a store and a running worker on a task queue of its own."""
    settings = settings.model_copy(update={"task_queue": f"bench-{uuid.uuid4().hex[:8]}"})
    client = await Client.connect(
        address, namespace=settings.temporal_namespace, data_converter=pydantic_data_converter
    )
    store = Store.open(settings.store_url)
    worker = build_worker(
        client,
        settings,
        store=store,
        library=library,
        registry=registry,
        models=models,
        **worker_options,
    )
    try:
        async with worker:
            yield Env(settings, client, store)
    finally:
        store.close()


async def run_project(
    env: Env, plan: Plan, *, model: str, concurrency: int, timeout_s: float = 300.0
) -> tuple[ProjectParams, ProjectState, float]:
    """Start a project and wait for its end: (params, final state, seconds from start to end)."""
    project_id = f"b-{uuid.uuid4().hex[:10]}"
    env.store.create_project(project_id=project_id, goal=plan.goal)
    params = ProjectParams(
        project_id=project_id,
        goal=plan.goal,
        plan=plan,
        model=model,
        concurrency=concurrency,
        max_review_rounds=0,
    )
    start = time.perf_counter()
    handle = await start_project(env.client, env.settings, params)
    state = await asyncio.wait_for(handle.result(), timeout_s)
    elapsed = time.perf_counter() - start
    if state.status != "succeeded":
        raise RuntimeError(f"bench project {project_id} ended {state.status}: {state.error}")
    return params, state, elapsed


def recorded_results(store: Store, project_id: str) -> dict[str, int]:
    """Activity results the store holds for a project, by kind (model, tool, commit, record)."""
    query = (
        select(ActivityResult.kind, func.count())
        .where(ActivityResult.project_id == project_id)
        .group_by(ActivityResult.kind)
    )
    with store._read() as session:
        return dict(session.execute(query).tuples().all())
