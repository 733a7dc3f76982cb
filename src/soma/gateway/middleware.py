"""Hardening for every response, as one pure ASGI middleware.

One layer instead of several ``BaseHTTPMiddleware``s because it sits on the hot path of every
proxied model call, and because it must not buffer streamed (SSE) responses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soma.gateway.errors import error_body

log = logging.getLogger("soma.gateway")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


class _BodyTooLarge(Exception):
    pass


class HardeningMiddleware:
    """Adds a request id and security headers, caps request bodies, and bounds the time until a
    response starts (streams, once started, may run as long as they keep producing)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope["soma.request_id"] = request_id
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send, request_id)
            return
        started = False
        overflow = False
        received = 0

        async def counting_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    overflow = True
                    raise _BodyTooLarge
            return message

        async def hardened_send(message: Message) -> None:
            nonlocal started
            if overflow:
                # The framework turned our exception into its own error response (a body that
                # fails mid-read is "unparseable" to it); answer what really happened instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._too_large(send, request_id)
                return
            if message["type"] == "http.response.start":
                started = True
                deadline.reschedule(None)
                headers = list(message.get("headers", []))
                # A response may set its own policy (console pages allow their own assets).
                own = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in own)
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, counting_receive, hardened_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send, request_id)
        except TimeoutError:
            if not started:
                await _send_json(
                    send,
                    504,
                    error_body(504, f"the request took longer than {self.timeout_s:g} s"),
                    request_id,
                )
        except Exception:
            # Handled here rather than by Starlette's outermost error middleware so that even a
            # 500 carries the request id and security headers; the trace stays in the log.
            log.exception(
                "unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id
            )
            if not started:
                message = (
                    f"internal error; the server log has the details under request id {request_id}"
                )
                await _send_json(send, 500, error_body(500, message), request_id)

    async def _too_large(self, send: Send, request_id: str) -> None:
        message = f"request body is larger than the limit of {self.max_body_bytes} bytes"
        await _send_json(send, 413, error_body(413, message), request_id)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *SECURITY_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
