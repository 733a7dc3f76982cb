"""``http.fetch``: read a web page or API response over HTTP(S).

Which hosts an agent may reach is the constitution's decision (the default one allows only
loopback, see ``deny-http-unlisted-hosts``); it sees the ``url`` argument before the call.
This tool makes sure the request cannot go anywhere the constitution did not see: redirects
are followed only on the same host (a redirect elsewhere is reported, so the agent asks for
that URL and the constitution judges it), the host httpx connects to must be the one the
policy parsed, and hosts resolving to private, link-local or reserved addresses (cloud
metadata, the worker's network) are refused whatever the allow-list says. That last check is
not atomic with the connection (DNS rebinding could still slip through), which is why the
allow-list, not this check, is the boundary.

Requests carry no credentials: ``Authorization`` and ``Cookie`` headers are refused, and the
process's proxy settings are ignored. Bodies are capped; the text goes to the model, which the
orchestrator wraps as untrusted data.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import Field

from soma.errors import ToolError
from soma.tools.base import Tool, ToolArgs, ToolContext, ToolResult, tool

__all__ = ["HTTP_TOOLS", "MAX_BODY_BYTES", "MAX_REDIRECTS"]

MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
FORBIDDEN_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "host", "forwarded", "x-forwarded-for"}
)
SHOWN_HEADERS = ("content-type", "content-length", "last-modified", "etag", "location")


class FetchArgs(ToolArgs):
    url: str = Field(min_length=1, max_length=4096, description="http:// or https:// URL.")
    method: Literal["GET", "HEAD"] = Field(default="GET", description="GET or HEAD.")
    headers: dict[str, str] | None = Field(
        default=None, description="Extra request headers, e.g. Accept (no credentials)."
    )


def _host(url: str) -> str:
    """The host the constitution judged, checked to be the one httpx will connect to: a URL
    the two parsers read differently (``http://a\\@b/``) could otherwise bypass the allow-list."""
    try:
        parts = urlsplit(url)
        policy_host = parts.hostname
        httpx_host = httpx.URL(url).host
    except (ValueError, httpx.InvalidURL):
        raise ToolError(f"{url!r} is not a valid URL", hint="use http://host/path") from None
    if parts.scheme not in {"http", "https"}:
        raise ToolError(
            f"scheme {parts.scheme or '(none)'!r} is not allowed",
            hint="http.fetch only reads http:// and https:// URLs",
        )
    if not policy_host:
        raise ToolError(f"{url!r} has no host", hint="use http://host/path")
    host = policy_host.rstrip(".").lower()
    if httpx_host.rstrip(".").lower() != host:
        raise ToolError(f"{url!r} is ambiguous about its host", hint="write the URL plainly")
    return host


async def _check_address(host: str, port: int) -> None:
    """Refuse hosts that resolve to private, link-local or reserved addresses; loopback stays
    allowed so a deployment can list its own local services."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ToolError(f"cannot resolve host {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address.is_loopback:
            continue
        if (
            address.is_private
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
            or address.is_unspecified
        ):
            raise ToolError(
                f"host {host!r} resolves to the non-public address {address}",
                hint="http.fetch does not reach private networks or cloud metadata; "
                "expose the service on a public or loopback address",
            )


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


@tool(
    "http.fetch",
    "Fetch a URL with GET or HEAD and return its status, main headers and text (capped at "
    "1 MiB). Only hosts the constitution allows; redirects to other hosts are not followed.",
    FetchArgs,
)
async def http_fetch(args: FetchArgs, ctx: ToolContext) -> ToolResult:
    headers = dict(args.headers or {})
    refused = sorted(name for name in headers if name.lower() in FORBIDDEN_HEADERS)
    if refused:
        raise ToolError(
            f"header(s) {', '.join(refused)} are not allowed",
            hint="http.fetch sends no credentials or routing headers; drop them",
        )
    url = args.url.strip()
    host = _host(url)
    timeout = httpx.Timeout(max(1.0, min(ctx.timeout_s, 30.0)))
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout, trust_env=False
    ) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            await _check_address(host, _port(url))
            try:
                async with client.stream(args.method, url, headers=headers) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = urljoin(url, response.headers["location"])
                        target_host = _host(target)
                        if target_host != host:
                            return ToolResult(
                                ok=False,
                                output=f"{url} redirects ({response.status_code}) to another "
                                f"host: {target}; fetch that URL directly if it is allowed",
                                data={"status": response.status_code, "location": target},
                            )
                        url = target
                        continue
                    return await _result(args.method, url, response)
            except httpx.HTTPError as exc:
                return ToolResult(
                    ok=False,
                    output=f"fetching {url} failed: {type(exc).__name__}: {exc}",
                    data={"error": type(exc).__name__},
                )
    return ToolResult(
        ok=False,
        output=f"more than {MAX_REDIRECTS} redirects from {args.url}; stopped at {url}",
        data={"location": url},
    )


async def _result(method: str, url: str, response: httpx.Response) -> ToolResult:
    body = bytearray()
    truncated = False
    if method != "HEAD":
        async for chunk in response.aiter_bytes():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                truncated = True
                del body[MAX_BODY_BYTES:]
                break
    lines = [f"HTTP {response.status_code} {response.reason_phrase}", f"url: {url}"]
    lines += [f"{n}: {response.headers[n]}" for n in SHOWN_HEADERS if n in response.headers]
    if method != "HEAD":
        lines.append("")
        if b"\x00" in body:
            lines.append(f"[binary body, {len(body)} bytes, not shown]")
        else:
            lines.append(body.decode(response.encoding or "utf-8", errors="replace"))
        if truncated:
            lines.append(f"[... body truncated at {MAX_BODY_BYTES} bytes ...]")
    return ToolResult(
        ok=response.is_success,
        output="\n".join(lines),
        data={
            "status": response.status_code,
            "url": url,
            "bytes": len(body),
            "truncated": truncated,
            "content_type": response.headers.get("content-type"),
        },
    )


HTTP_TOOLS: tuple[Tool, ...] = (http_fetch,)
