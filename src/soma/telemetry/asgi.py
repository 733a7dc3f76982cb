"""Tracing and metrics for every gateway request, as one small pure-ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses (SSE) pass through unbuffered, and
small because it runs on every proxied model call: one span, one counter, one histogram
observation. The route label is the matched route's template (``/api/v1/projects/{project_id}``),
read after the app has routed the request, never the raw path (unbounded cardinality).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from soma.telemetry.metrics import CONTENT_TYPE_LATEST, HTTP_REQUESTS, HTTP_SECONDS, render
from soma.telemetry.tracing import tracer

UNMATCHED = "<unmatched>"


class TelemetryMiddleware:
    """One ``SERVER`` span per request (continuing a caller's ``traceparent``), and the
    ``soma_http_*`` metrics. Install it outermost so it also times the hardening layer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        parent = _parent_context(scope)
        span = tracer().start_span(method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(set_span_in_context(span, parent))
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            otel_context.detach(token)
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
            if span.is_recording():
                span.update_name(f"{method} {route}")
                span.set_attributes(
                    {
                        "http.request.method": method,
                        "http.route": route,
                        "url.path": scope["path"],
                        "http.response.status_code": status,
                    }
                )
                request_id = scope.get("soma.request_id")
                if request_id:
                    span.set_attribute("soma.request_id", request_id)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request (a mount's prefix for mounted
    apps such as static files), or ``<unmatched>`` for a 404 with no route."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _parent_context(scope: Scope) -> otel_context.Context | None:
    """The caller's trace context, if it sent one (W3C ``traceparent``); the header scan is
    skipped otherwise, which is the common case and keeps the hot path short."""
    headers = scope.get("headers") or ()
    for name, _ in headers:
        if name == b"traceparent":
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
            return extract(carrier)
    return None


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition, public like ``/healthz`` (it holds
    counts, never tenant data)."""
    return Response(render(), media_type=CONTENT_TYPE_LATEST)
