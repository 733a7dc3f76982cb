"""Prometheus metrics: every metric Soma exports, defined once, in one registry.

A dedicated registry (not prometheus_client's global one) so that what `/metrics` shows is
exactly Soma's metrics plus the process collectors, and so that an embedder's own metrics never
collide with ours. Label values are bounded on purpose (route templates, model specs, tool
names, effects): an unbounded label (a raw path, a project id) would grow the registry forever.
"""

from __future__ import annotations

import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "record_cost",
    "record_project",
    "record_sandbox_failure",
    "record_tokens",
    "record_tool_call",
    "render",
    "start_metrics_server",
]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Latency buckets from 0.5 ms (a proxied call's overhead) to a minute (a slow plan request).
_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)

HTTP_REQUESTS = Counter(
    "soma_http_requests_total",
    "Gateway requests by method, route template and status code.",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "soma_http_request_seconds",
    "Gateway request duration (until the response ends; streams included) by route template.",
    ("method", "route"),
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)
PROJECTS = Counter(
    "soma_projects",
    "Projects by final status (succeeded, failed, cancelled).",
    ("status",),
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "soma_model_tokens",
    "Model tokens by model spec and direction (input, output).",
    ("model", "direction"),
    registry=REGISTRY,
)
MODEL_COST = Counter(
    "soma_model_cost_usd",
    "Model cost in USD by model spec, as priced by metering.",
    ("model",),
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "soma_tool_calls",
    "Tool calls by tool and effect: the constitution's decision (allow, deny, "
    "require_approval, redact) when checked, ok or error when run.",
    ("tool", "effect"),
    registry=REGISTRY,
)
SANDBOX_FAILURES = Counter(
    "soma_sandbox_failures",
    "Sandboxed commands that did not end on their own, by reason "
    "(timeout, memory, cpu, file_size, signal, error).",
    ("reason",),
    registry=REGISTRY,
)
TASK_QUEUE_BACKLOG = Gauge(
    "soma_task_queue_backlog",
    "Approximate Temporal task queue backlog by queue and task type (workflow, activity).",
    ("task_queue", "type"),
    registry=REGISTRY,
)
WORKER_ACTIVITIES = Counter(
    "soma_worker_activities",
    "Activities run by this worker, by activity and outcome (ok, error, cancelled).",
    ("activity", "outcome"),
    registry=REGISTRY,
)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

_server_lock = threading.Lock()
_server_ports: set[int] = set()


def record_tokens(model: str, input_tokens: int, output_tokens: int) -> None:
    """Tokens of one model call (only calls really made: replayed results are not counted)."""
    if input_tokens:
        MODEL_TOKENS.labels(model, "input").inc(input_tokens)
    if output_tokens:
        MODEL_TOKENS.labels(model, "output").inc(output_tokens)


def record_cost(model: str, usd: float) -> None:
    """What metering priced a model call at; metering owns prices, this only counts them."""
    if usd > 0:
        MODEL_COST.labels(model).inc(usd)


def record_tool_call(tool: str, effect: str) -> None:
    """A constitution decision on a tool call (its effect), or a run's result (ok/error)."""
    TOOL_CALLS.labels(tool, effect).inc()


def record_project(status: str) -> None:
    """A project's status change; only final statuses are counted."""
    if status in TERMINAL_STATUSES:
        PROJECTS.labels(status).inc()


def record_sandbox_failure(reason: str) -> None:
    SANDBOX_FAILURES.labels(reason).inc()


def render() -> bytes:
    """The registry in Prometheus' text exposition format."""
    return generate_latest(REGISTRY)


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread (the worker has no web server);
    a second call for the same port is a no-op."""
    with _server_lock:
        if port in _server_ports:
            return
        start_http_server(port, addr=addr, registry=REGISTRY)
        _server_ports.add(port)
