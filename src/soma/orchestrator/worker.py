"""Temporal workers: the process that runs workflows and activities.

`soma run` starts one in-process for convenience; `soma worker` runs standalone ones, and any
number of them can poll the same task queue to scale out.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.orchestrator.activities import SomaActivities
from soma.orchestrator.workflows import CapsuleWorkflow, ProjectWorkflow
from soma.settings import Settings
from soma.specs.library import Library
from soma.store import Store
from soma.telemetry.sandbox import MeteredSandbox
from soma.telemetry.temporal import ActivityMetrics
from soma.tools import ToolRegistry, default_registry
from soma.tools.sandbox import make_sandbox

ModelFactory = Callable[[str], Model]

# Soma's own modules and the libraries the workflows use are deterministic and import-safe, so
# they are shared with the sandbox instead of re-imported for every workflow run.
# opentelemetry: the tracing interceptor (inherited from the client) keeps its context there.
PASSTHROUGH = (
    "soma",
    "pydantic",
    "pydantic_core",
    "jsonschema",
    "referencing",
    "rpds",
    "yaml",
    "opentelemetry",
)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    store: Store,
    library: Library | None = None,
    registry: ToolRegistry | None = None,
    models: ModelFactory | None = None,
    max_concurrent_activities: int = 200,
) -> Worker:
    activities = SomaActivities(
        settings,
        library=library or Library.builtin(),
        registry=registry or default_registry(),
        sandbox=MeteredSandbox(make_sandbox(settings.sandbox)),
        store=store,
        models=models or (lambda spec: resolve_model(spec, settings)),
    )
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[ProjectWorkflow, CapsuleWorkflow],
        activities=activities.all(),
        workflow_runner=runner,
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_local_activities=max_concurrent_activities,
        max_concurrent_workflow_tasks=max_concurrent_activities,
        # Tracing comes from the client's interceptors; this one only counts activities.
        interceptors=[ActivityMetrics()],
    )
