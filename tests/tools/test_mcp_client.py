from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pydantic import ValidationError

from soma.errors import ToolError
from soma.tools import ToolContext, ToolRegistry
from soma.tools.mcp_client import (
    McpServerConfig,
    discover_tools,
    register_mcp_tools,
    tool_name,
)

from .mcp_echo_server import app

SERVER = str(Path(__file__).with_name("mcp_echo_server.py"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(timeout=10)


def stdio_config() -> McpServerConfig:
    return McpServerConfig(name="echo", transport="stdio", command=[sys.executable, SERVER])


@pytest.fixture(params=["stdio", "http"])
def config(request: pytest.FixtureRequest) -> McpServerConfig:
    if request.param == "stdio":
        return stdio_config()
    url = request.getfixturevalue("http_url")
    return McpServerConfig(name="echo", transport="http", url=url, headers={"X-Test": "1"})


async def test_discovers_tools_with_schemas(config: McpServerConfig) -> None:
    tools = {t.spec.name: t for t in await discover_tools(config)}
    assert set(tools) == {"mcp.echo.echo", "mcp.echo.fail_loudly"}
    echo = tools["mcp.echo.echo"]
    assert echo.spec.description == "Echo the text back, repeated."
    assert echo.spec.parameters["required"] == ["text"]
    assert "times" in echo.spec.parameters["properties"]
    assert tools["mcp.echo.fail_loudly"].remote_name == "Fail Loudly!"


async def test_calls_through_the_registry(config: McpServerConfig, plain_ctx: ToolContext) -> None:
    registry = ToolRegistry()
    register_mcp_tools(registry, await discover_tools(config))
    result = await registry.call("mcp.echo.echo", {"text": "hi", "times": 2}, plain_ctx)
    assert result.ok
    assert result.output == "hi hi"
    assert result.data is not None
    assert result.data["tool"] == "echo"
    # The registry validates against the remote schema before any connection is made.
    bad = await registry.call("mcp.echo.echo", {"times": 2}, plain_ctx)
    assert not bad.ok
    assert "text" in bad.output


async def test_error_result_is_not_ok(config: McpServerConfig, plain_ctx: ToolContext) -> None:
    tools = {t.spec.name: t for t in await discover_tools(config)}
    result = await tools["mcp.echo.fail_loudly"]({}, plain_ctx)
    assert not result.ok
    assert "the tool failed on purpose" in result.output


async def test_registering_twice_is_a_clear_error() -> None:
    tools = await discover_tools(stdio_config())
    registry = ToolRegistry()
    register_mcp_tools(registry, tools)
    with pytest.raises(ToolError, match="already registered"):
        register_mcp_tools(registry, tools)


async def test_connection_refused_is_a_tool_error() -> None:
    config = McpServerConfig(
        name="gone", transport="http", url=f"http://127.0.0.1:{_free_port()}/mcp"
    )
    with pytest.raises(ToolError, match=r"MCP server 'gone'.*failed"):
        await discover_tools(config)


async def test_missing_command_is_a_tool_error() -> None:
    config = McpServerConfig(name="gone", transport="stdio", command=["/nonexistent/mcp-server"])
    with pytest.raises(ToolError, match="MCP server 'gone'"):
        await discover_tools(config)


async def test_a_dead_server_fails_the_call_not_the_agent(plain_ctx: ToolContext) -> None:
    tools = await discover_tools(stdio_config())
    tools[0].config = McpServerConfig(name="echo", transport="stdio", command=["/nonexistent"])
    registry = ToolRegistry(tools)
    result = await registry.call(tools[0].spec.name, {"text": "x"}, plain_ctx)
    assert not result.ok
    assert "MCP server 'echo'" in result.output


def test_config_needs_a_target() -> None:
    with pytest.raises(ValidationError, match="needs 'command'"):
        McpServerConfig(name="x", transport="stdio")
    with pytest.raises(ValidationError, match="needs 'url'"):
        McpServerConfig(name="x", transport="http")
    with pytest.raises(ValidationError):
        McpServerConfig(name="Not A Slug", transport="http", url="http://x")


def test_tool_names_are_sanitised() -> None:
    assert tool_name("gh", "Create Issue") == "mcp.gh.create_issue"
    assert tool_name("gh", "???") == "mcp.gh.tool"
    assert len(tool_name("gh", "x" * 200)) == 64
