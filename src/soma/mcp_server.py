"""Soma as an MCP server: capsules become tools and a tenant's projects become resources.

Any MCP host (Claude Desktop, an IDE, another agent) can then run a capsule as one tool call
and browse the projects it may see, without learning Soma's own API. Everything is scoped to
the one tenant the server is started for, because an MCP session carries no Soma identity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.types import ContentBlock, TextContent
from mcp.types import Tool as McpToolInfo

from soma.agents.capsule_runner import check_inputs, run_capsule
from soma.errors import NotFound, ToolError
from soma.models.protocol import Model
from soma.models.registry import resolve_model
from soma.orchestrator.launch import new_project_id
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import Capsule
from soma.store.store import Store
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox
from soma.workspace import Workspace

ModelFactory = Callable[[], Model]
PROJECT_LIMIT = 200


class CapsuleServer(FastMCP[Any]):
    """FastMCP derives tool schemas from Python signatures; capsules bring their own JSON
    Schema, so tool listing and calling are answered from the library instead."""

    def __init__(
        self,
        *,
        settings: Settings,
        library: Library,
        make_model: ModelFactory,
        host: str,
        port: int,
    ) -> None:
        super().__init__(
            name="soma",
            instructions="Run Soma capsules (one agent, one task) and read Soma projects.",
            host=host,
            port=port,
        )
        self.soma_settings = settings
        self.capsules = {capsule.name: capsule for capsule in library.capsules()}
        self.library = library
        self.make_model = make_model

    async def list_tools(self) -> list[McpToolInfo]:
        return [
            McpToolInfo(name=c.name, description=c.description, inputSchema=c.inputs)
            for c in sorted(self.capsules.values(), key=lambda c: c.name)
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        capsule = self.capsules.get(name)
        if capsule is None:
            known = ", ".join(sorted(self.capsules)) or "(none)"
            raise NotFound(f"no capsule named {name!r}", hint=f"capsules: {known}")
        output = await self._run(capsule, arguments or {})
        return [TextContent(type="text", text=output)]

    async def _run(self, capsule: Capsule, inputs: dict[str, Any]) -> str:
        """Run the capsule in a fresh workspace; a failed run raises, so the host sees isError."""
        check_inputs(capsule, inputs)
        settings = self.soma_settings
        workspace = Workspace.open(settings.workspaces_dir, new_project_id(capsule.name))
        result = await run_capsule(
            capsule,
            self.library.persona(capsule.persona),
            inputs,
            model=self.make_model(),
            registry=default_registry(),
            workspace=workspace,
            sandbox=make_sandbox(settings.sandbox),
            tool_timeout_s=settings.sandbox_timeout_s,
            tool_memory_mb=settings.sandbox_memory_mb,
        )
        if not result.ok:
            raise ToolError(
                f"capsule {capsule.ref} failed after {result.steps} step(s): {result.error}",
                hint=f"the agent's work so far is in {workspace.path}",
            )
        return json.dumps(result.output, ensure_ascii=False)


def build_mcp_server(
    settings: Settings,
    store: Store,
    library: Library,
    tenant_id: str,
    *,
    make_model: ModelFactory | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> FastMCP[Any]:
    """The server for one tenant; ``make_model`` lets tests swap in a scripted model."""

    def default_model() -> Model:
        return resolve_model(settings.model, settings)

    server = CapsuleServer(
        settings=settings,
        library=library,
        make_model=make_model or default_model,
        host=host,
        port=port,
    )

    @server.resource(
        "soma://projects",
        name="projects",
        description=f"Projects of tenant {tenant_id}, newest first.",
        mime_type="application/json",
    )
    def projects() -> str:
        listed = store.list_projects(tenant_id, limit=PROJECT_LIMIT)
        return json.dumps([_project_summary(p.model_dump(mode="json")) for p in listed])

    @server.resource(
        "soma://projects/{project_id}",
        name="project",
        description="One project with its plan and the runs (nodes) it is made of.",
        mime_type="application/json",
    )
    def project(project_id: str) -> str:
        record = store.get_project(project_id, tenant_id)  # NotFound for other tenants
        runs = store.list_nodes(project_id, tenant_id=tenant_id)
        body = record.model_dump(mode="json")
        body["runs"] = [node.model_dump(mode="json") for node in runs]
        return json.dumps(body)

    return server


def _project_summary(project: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "goal", "status", "created_at", "error")
    return {key: project.get(key) for key in keys} | {"uri": f"soma://projects/{project['id']}"}


async def serve(server: FastMCP[Any], transport: Literal["stdio", "http"]) -> None:
    """Serve until the host disconnects (stdio) or the process is stopped (HTTP)."""
    if transport == "stdio":
        await server.run_stdio_async()
    else:
        await server.run_streamable_http_async()
