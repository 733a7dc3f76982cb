"""Soma's MCP server seen through the official SDK's client, in memory and over stdio."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import TextContent, TextResourceContents
from pydantic import AnyUrl

from soma.mcp_server import build_mcp_server
from soma.models.scripted import ScriptedModel, final
from soma.settings import Settings
from soma.specs.library import Library
from soma.store.store import Store

SPEC = {"title": "Todo CLI", "spec": "# Todo CLI\n\nR1. `todo add` stores an item.\n" + "x" * 200}
RUNNER = (
    "import typer; from soma.cli.mcp_cmds import mcp_app; "
    "app = typer.Typer(); app.add_typer(mcp_app, name='mcp'); app()"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, sandbox="subprocess")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.store_url) as opened:
        opened.create_project("mine", "Build a todo CLI", tenant_id="acme")
        opened.create_project("theirs", "Someone else's secret", tenant_id="other")
        yield opened


@pytest.fixture(scope="module")
def library() -> Library:
    return Library.builtin()


def _text(block: object) -> str:
    assert isinstance(block, TextContent | TextResourceContents)
    return block.text


async def test_capsules_are_tools_and_run_with_the_injected_model(
    settings: Settings, store: Store, library: Library
) -> None:
    model = ScriptedModel([final(SPEC)])
    server = build_mcp_server(settings, store, library, "acme", make_model=lambda: model)
    async with create_connected_server_and_client_session(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {c.name for c in library.capsules()}
        assert tools["write-spec"].inputSchema == library.capsule("write-spec").inputs
        result = await client.call_tool("write-spec", {"goal": "Build a todo-list CLI"})
        assert not result.isError, result.content
        assert json.loads(_text(result.content[0])) == SPEC
        assert model.remaining == 0


async def test_bad_inputs_and_unknown_capsules_are_error_results(
    settings: Settings, store: Store, library: Library
) -> None:
    server = build_mcp_server(settings, store, library, "acme", make_model=ScriptedModel)
    async with create_connected_server_and_client_session(server) as client:
        bad = await client.call_tool("write-spec", {})
        assert bad.isError
        assert "goal" in _text(bad.content[0])
        unknown = await client.call_tool("write-speck", {})
        assert unknown.isError
        assert "no capsule named 'write-speck'" in _text(unknown.content[0])


async def test_projects_are_tenant_scoped_resources(
    settings: Settings, store: Store, library: Library
) -> None:
    store.upsert_node("mine", "spec", tenant_id="acme", capsule="write-spec", status="succeeded")
    server = build_mcp_server(settings, store, library, "acme", make_model=ScriptedModel)
    async with create_connected_server_and_client_session(server) as client:
        listed = await client.read_resource(AnyUrl("soma://projects"))
        projects = json.loads(_text(listed.contents[0]))
        assert [p["id"] for p in projects] == ["mine"]
        assert projects[0]["uri"] == "soma://projects/mine"
        one = await client.read_resource(AnyUrl("soma://projects/mine"))
        body = json.loads(_text(one.contents[0]))
        assert body["goal"] == "Build a todo CLI"
        assert [run["node_id"] for run in body["runs"]] == ["spec"]
        with pytest.raises(Exception, match="theirs"):
            await client.read_resource(AnyUrl("soma://projects/theirs"))


async def test_soma_mcp_serve_over_stdio(settings: Settings, store: Store) -> None:
    env = dict(os.environ, SOMA_HOME=str(settings.home), SOMA_SANDBOX="subprocess")
    params = StdioServerParameters(
        command=sys.executable, args=["-c", RUNNER, "mcp", "serve", "--tenant", "acme"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        names = {t.name for t in (await client.list_tools()).tools}
        assert "write-spec" in names
        listed = await client.read_resource(AnyUrl("soma://projects"))
        assert [p["id"] for p in json.loads(_text(listed.contents[0]))] == ["mine"]
