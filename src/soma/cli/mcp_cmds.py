"""``soma mcp``: serve capsules and projects to MCP hosts (docs/mcp.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from soma.cli.common import friendly_errors, load_library
from soma.mcp_server import build_mcp_server, serve
from soma.settings import Settings
from soma.store.store import Store

mcp_app = typer.Typer(help="Model Context Protocol: Soma as an MCP server.", no_args_is_help=True)


@mcp_app.command("serve")
@friendly_errors
def mcp_serve(
    tenant: Annotated[str, typer.Option(help="Tenant whose projects are exposed.")] = "default",
    http: Annotated[
        bool, typer.Option("--http", help="Serve streamable HTTP instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
) -> None:
    """Expose capsules as MCP tools and projects as resources; stdout is the protocol on stdio,
    so nothing else is printed there."""
    settings = Settings()
    with Store.open(settings.store_url) as store:
        server = build_mcp_server(
            settings, store, load_library(settings), tenant, host=host, port=port
        )
        asyncio.run(serve(server, "http" if http else "stdio"))
