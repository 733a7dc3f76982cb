"""Client-side operations on projects: start, watch, review, cancel."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from soma.errors import NotFound
from soma.orchestrator.types import ProjectParams, ProjectState, ReviewDecision
from soma.orchestrator.workflows import ProjectWorkflow
from soma.settings import Settings


def workflow_id(project_id: str) -> str:
    return f"project-{project_id}"


async def start_project(
    client: Client, settings: Settings, params: ProjectParams
) -> WorkflowHandle[ProjectWorkflow, ProjectState]:
    return await client.start_workflow(
        ProjectWorkflow.run,
        params,
        id=workflow_id(params.project_id),
        task_queue=settings.task_queue,
    )


def project_handle(
    client: Client, project_id: str
) -> WorkflowHandle[ProjectWorkflow, ProjectState]:
    return client.get_workflow_handle_for(ProjectWorkflow.run, workflow_id(project_id))


async def project_state(client: Client, project_id: str) -> ProjectState:
    try:
        return await project_handle(client, project_id).query(ProjectWorkflow.state)
    except RPCError as exc:
        raise NotFound(
            f"project {project_id!r} has no running or recent workflow: {exc.message}",
            hint="soma status lists projects from the store",
        ) from exc


async def send_review(
    client: Client, project_id: str, node_id: str, decision: ReviewDecision
) -> None:
    await project_handle(client, project_id).signal(
        ProjectWorkflow.review, args=[node_id, decision]
    )


async def cancel_project(client: Client, project_id: str) -> None:
    await project_handle(client, project_id).cancel()
