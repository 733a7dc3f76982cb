"""MCP servers as Soma tools: each tool an MCP server offers becomes ``mcp.<server>.<tool>``.

A session is opened per call rather than held open: agents call tools rarely compared with the
cost of a handshake, and a fresh session survives a server restart or a dropped connection
without any reconnection logic of ours. Configuration is a plain object so whoever stores
per-tenant settings can build it from wherever they keep them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field, model_validator

from soma.errors import ToolError
from soma.models.types import ToolSpec
from soma.tools.base import ToolContext, ToolResult
from soma.tools.registry import ToolRegistry

SLUG = r"^[a-z][a-z0-9_-]*$"
# OpenAI-compatible providers reject longer function names; ours include the prefix.
MAX_NAME = 64
DEFAULT_TIMEOUT_S = 30.0


class McpServerConfig(BaseModel):
    """How to reach one MCP server; ``name`` namespaces its tools so two servers never clash."""

    name: str = Field(pattern=SLUG, max_length=32)
    transport: Literal["stdio", "http"]
    command: list[str] | None = None
    env: dict[str, str] = {}
    url: str | None = None
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)

    @model_validator(mode="after")
    def _transport_has_target(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("an stdio MCP server needs 'command' (the program and its arguments)")
        if self.transport == "http" and not self.url:
            raise ValueError("an http MCP server needs 'url' (its streamable HTTP endpoint)")
        return self


def tool_name(server: str, name: str) -> str:
    """The registry name for an MCP tool: lower-case, safe characters, within provider limits."""
    safe = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "tool"
    return f"mcp.{server}.{safe}"[:MAX_NAME]


@asynccontextmanager
async def open_session(config: McpServerConfig) -> AsyncIterator[ClientSession]:
    """An initialised session; any failure to connect becomes a ToolError naming the server."""
    try:
        async with _transport(config) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
    except ToolError:
        raise
    except Exception as exc:  # transports raise anything, OSError to groups
        raise _unreachable(config, exc) from exc


@asynccontextmanager
async def _transport(config: McpServerConfig) -> AsyncIterator[tuple[Any, Any]]:
    if config.transport == "stdio":
        assert config.command  # checked by the model validator
        params = StdioServerParameters(
            command=config.command[0], args=config.command[1:], env=config.env or None
        )
        async with stdio_client(params) as (read, write):
            yield read, write
        return
    assert config.url
    timeout = httpx.Timeout(config.timeout_s, read=max(config.timeout_s, 300.0))
    async with (
        httpx.AsyncClient(headers=config.headers, timeout=timeout) as client,
        streamable_http_client(config.url, http_client=client) as (read, write, _),
    ):
        yield read, write


def _unreachable(config: McpServerConfig, exc: BaseException) -> ToolError:
    cause = _root_cause(exc)
    where = " ".join(config.command or []) if config.transport == "stdio" else config.url
    return ToolError(
        f"MCP server {config.name!r} ({config.transport} {where}) failed: "
        f"{type(cause).__name__}: {cause}",
        hint="check that the server runs and the command, URL and headers in its config",
    )


def _root_cause(exc: BaseException) -> BaseException:
    """The first leaf of nested exception groups: anyio wraps the real error in task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpTool:
    """One remote MCP tool behind the Tool protocol."""

    def __init__(self, config: McpServerConfig, remote_name: str, spec: ToolSpec) -> None:
        self.config = config
        self.remote_name = remote_name
        self.spec = spec

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        async with open_session(self.config) as session:
            try:
                result = await session.call_tool(self.remote_name, args)
            except Exception as exc:  # protocol errors become agent-visible
                raise ToolError(
                    f"MCP tool {self.remote_name!r} on {self.config.name!r} failed: {exc}"
                ) from exc
        return _to_result(self.config.name, self.remote_name, result)

    def __repr__(self) -> str:
        return f"McpTool({self.spec.name!r})"


def _to_result(server: str, remote: str, result: CallToolResult) -> ToolResult:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    output = "\n".join(texts)
    skipped = len(result.content) - len(texts)
    if skipped:
        output += f"\n[{skipped} non-text content block(s) omitted]"
    data: dict[str, Any] = {"server": server, "tool": remote}
    if result.structuredContent is not None:
        data["structured"] = result.structuredContent
    return ToolResult(ok=not result.isError, output=output.strip() or "(no output)", data=data)


async def discover_tools(config: McpServerConfig) -> list[McpTool]:
    """Connect once and describe every tool the server offers; raises ToolError if unreachable."""
    async with open_session(config) as session:
        listed = await session.list_tools()
    tools: list[McpTool] = []
    for remote in listed.tools:
        spec = ToolSpec(
            name=tool_name(config.name, remote.name),
            description=remote.description or remote.title or remote.name,
            parameters=remote.inputSchema or {"type": "object", "properties": {}},
        )
        tools.append(McpTool(config, remote.name, spec))
    return tools


def register_mcp_tools(registry: ToolRegistry, tools: list[McpTool]) -> None:
    """Register discovered tools; two remote names that sanitise alike are a config error."""
    for item in tools:
        if item.spec.name in registry:
            raise ToolError(
                f"MCP tool {item.remote_name!r} from {item.config.name!r} maps to "
                f"{item.spec.name!r}, which is already registered",
                hint="give the MCP server another name, or rename the clashing tool upstream",
            )
        registry.register(item)
