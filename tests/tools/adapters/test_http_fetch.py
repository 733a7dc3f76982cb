"""``http.fetch`` against a real local server, and the default constitution's allow-list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from soma.constitution import Action, Constitution, Subject
from soma.errors import ToolError
from soma.specs.library import Library
from soma.tools import ToolContext
from soma.tools.adapters.http_fetch import HTTP_TOOLS, MAX_BODY_BYTES, http_fetch
from soma.tools.sandbox import Sandbox
from soma.workspace import Workspace
from tests.gateway.conftest import serve_in_thread
from tests.tools.conftest import AGENT


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from the server")


async def big(request: Request) -> Response:
    return PlainTextResponse("y" * (2 * MAX_BODY_BYTES))


async def headers(request: Request) -> Response:
    return JSONResponse(dict(request.headers))


async def same_host(request: Request) -> Response:
    return RedirectResponse("/hello", status_code=302)


async def other_host(request: Request) -> Response:
    # localhost and 127.0.0.1 are the same machine but not the same host to the allow-list.
    return RedirectResponse(f"http://localhost:{request.url.port}/hello", status_code=302)


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=302)


async def missing(request: Request) -> Response:
    return PlainTextResponse("nothing here", status_code=404)


APP = Starlette(
    routes=[
        Route("/hello", hello, methods=["GET", "HEAD"]),
        Route("/big", big),
        Route("/headers", headers),
        Route("/same", same_host),
        Route("/other", other_host),
        Route("/loop", loop),
        Route("/missing", missing),
    ]
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    url, stop = serve_in_thread(APP)
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def ctx(workspace: Workspace, plain_sandbox: Sandbox) -> ToolContext:
    return ToolContext(workspace, plain_sandbox, AGENT, timeout_s=10)


async def test_fetches_text(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/hello"}, ctx)
    assert result.ok, result.output
    assert result.output.startswith("HTTP 200 OK")
    assert "hello from the server" in result.output
    assert result.data is not None
    assert result.data["status"] == 200


async def test_head_returns_no_body(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/hello", "method": "HEAD"}, ctx)
    assert result.ok
    assert "hello from the server" not in result.output
    assert "content-type: text/plain" in result.output


async def test_other_methods_are_refused(base_url: str, ctx: ToolContext) -> None:
    with pytest.raises(ToolError, match="method"):
        await http_fetch({"url": f"{base_url}/hello", "method": "POST"}, ctx)


async def test_the_body_is_capped(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/big"}, ctx)
    assert result.ok
    assert result.data is not None
    assert result.data["truncated"] is True
    assert result.data["bytes"] == MAX_BODY_BYTES
    assert "truncated" in result.output
    assert len(result.output) < MAX_BODY_BYTES + 1000


async def test_plain_headers_are_sent(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch(
        {"url": f"{base_url}/headers", "headers": {"Accept": "application/json"}}, ctx
    )
    assert '"accept":"application/json"' in result.output


@pytest.mark.parametrize("name", ["Authorization", "cookie", "Proxy-Authorization", "Host"])
async def test_credential_headers_are_refused(base_url: str, ctx: ToolContext, name: str) -> None:
    with pytest.raises(ToolError, match="not allowed"):
        await http_fetch({"url": f"{base_url}/hello", "headers": {name: "x"}}, ctx)


async def test_same_host_redirects_are_followed(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/same"}, ctx)
    assert result.ok
    assert "hello from the server" in result.output
    assert result.data is not None
    assert result.data["url"] == f"{base_url}/hello"


async def test_redirects_to_other_hosts_are_not_followed(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/other"}, ctx)
    assert not result.ok
    assert "another host" in result.output
    assert "hello from the server" not in result.output
    assert result.data is not None
    assert result.data["location"].startswith("http://localhost:")


async def test_redirect_loops_stop(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/loop"}, ctx)
    assert not result.ok
    assert "redirects" in result.output


async def test_http_errors_are_failed_results(base_url: str, ctx: ToolContext) -> None:
    result = await http_fetch({"url": f"{base_url}/missing"}, ctx)
    assert not result.ok
    assert result.output.startswith("HTTP 404")


async def test_unreachable_servers_are_failed_results(ctx: ToolContext) -> None:
    result = await http_fetch({"url": "http://127.0.0.1:9/"}, ctx)
    assert not result.ok
    assert "failed" in result.output


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/", "127.0.0.1/x"]
)
async def test_only_http_and_https(ctx: ToolContext, url: str) -> None:
    with pytest.raises(ToolError, match="scheme"):
        await http_fetch({"url": url}, ctx)


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[fd00::1]/"],
)
async def test_private_addresses_are_refused(ctx: ToolContext, url: str) -> None:
    with pytest.raises(ToolError, match="non-public address"):
        await http_fetch({"url": url}, ctx)


def test_the_default_constitution_allows_only_loopback(base_url: str) -> None:
    engine = Constitution.compile(Library.builtin().constitution("default"))
    dev = Subject(persona="developer")

    def decide(url: str) -> str:
        action = Action(kind="tool_call", tool="http.fetch", arguments={"url": url})
        return engine.check(dev, action).effect

    assert decide("https://example.com") == "deny"
    assert decide("http://127.0.0.1.example.com/") == "deny"
    assert decide(f"{base_url}/hello") == "allow"
    assert decide("http://localhost:8080/x") == "allow"
    denied = engine.check(
        dev, Action(kind="tool_call", tool="http.fetch", arguments={"url": "https://example.com"})
    )
    assert denied.rule_id == "deny-http-unlisted-hosts"


def test_exported_tools() -> None:
    assert [t.spec.name for t in HTTP_TOOLS] == ["http.fetch"]
    assert set(HTTP_TOOLS[0].spec.parameters["properties"]) == {"url", "method", "headers"}
