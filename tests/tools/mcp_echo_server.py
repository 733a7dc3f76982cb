"""A tiny MCP server built with the official SDK, for the MCP client tests.

Run as a script it speaks stdio; ``app()`` gives the same server as a streamable HTTP ASGI app.
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP
from starlette.applications import Starlette


def build() -> FastMCP:
    server = FastMCP("echo")

    @server.tool(description="Echo the text back, repeated.")
    def echo(text: str, times: int = 1) -> str:
        return " ".join([text] * times)

    @server.tool(name="Fail Loudly!", description="Always fails.")
    def fail() -> str:
        raise ValueError("the tool failed on purpose")

    return server


def app() -> Starlette:
    return build().streamable_http_app()


if __name__ == "__main__":
    build().run("stdio")
    sys.exit(0)
