"""Prometheus metrics: exposed on the gateway and the worker, and moving with the work."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from soma.models.synthetic import SyntheticModel
from soma.telemetry.metrics import REGISTRY, record_cost, start_metrics_server
from soma.telemetry.sandbox import MeteredSandbox
from soma.telemetry.temporal import sample_backlog
from soma.tools.sandbox import SandboxResult
from tests.gateway.conftest import LiveGateway
from tests.telemetry.project_run import run_project


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_route_template(gateway: LiveGateway) -> None:
    route = "/api/v1/projects/{project_id}"
    before = value("soma_http_requests_total", method="GET", route=route, status="401")
    seconds = value("soma_http_request_seconds_count", method="GET", route=route)
    healthz = value("soma_http_requests_total", method="GET", route="/healthz", status="200")
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/api/v1/projects/p-123").status_code == 401
        assert client.get("/api/v1/projects/p-456").status_code == 401
        assert client.get("/healthz").status_code == 200
        assert client.get("/no/such/path").status_code == 404
        exposed = client.get("/metrics")
    assert value("soma_http_requests_total", method="GET", route=route, status="401") == before + 2
    assert value("soma_http_request_seconds_count", method="GET", route=route) == seconds + 2
    assert (
        value("soma_http_requests_total", method="GET", route="/healthz", status="200")
        == healthz + 1
    )
    assert value("soma_http_requests_total", method="GET", route="<unmatched>", status="404") >= 1
    assert exposed.status_code == 200
    assert exposed.headers["content-type"].startswith("text/plain")
    assert 'soma_http_requests_total{method="GET",route="/healthz",status="200"}' in exposed.text
    assert "p-123" not in exposed.text  # raw paths never become labels


def test_metrics_route_is_not_in_the_openapi_schema(gateway: LiveGateway) -> None:
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert "/metrics" not in schema["paths"]


def test_record_cost_moves_the_cost_counter() -> None:
    before = value("soma_model_cost_usd_total", model="openai:gpt-4o-mini")
    record_cost("openai:gpt-4o-mini", 0.25)
    record_cost("openai:gpt-4o-mini", 0.0)
    assert value("soma_model_cost_usd_total", model="openai:gpt-4o-mini") == before + 0.25


class _FakeSandbox:
    name = "fake"
    isolated = True

    def __init__(self, result: SandboxResult) -> None:
        self.result = result

    async def run(self, argv: Any, **_: Any) -> SandboxResult:
        return self.result


async def test_sandbox_failures_are_counted_by_reason(tmp_path: Path) -> None:
    def result(timed_out: bool, killed: str | None) -> SandboxResult:
        return SandboxResult(1, "", "", timed_out, killed, 0.1)

    cases = {
        "timeout": result(True, "timeout: still running after 1s, killed"),
        "memory": result(False, "killed by SIGKILL (memory limit is 64 MB)"),
        "signal": result(False, "killed by SIGTERM"),
    }
    for reason, outcome in cases.items():
        before = value("soma_sandbox_failures_total", reason=reason)
        sandbox = MeteredSandbox(_FakeSandbox(outcome))
        await sandbox.run(["true"], cwd=tmp_path, timeout_s=1, memory_mb=64)
        assert value("soma_sandbox_failures_total", reason=reason) == before + 1
    clean = MeteredSandbox(_FakeSandbox(result(False, None)))
    total = sum(value("soma_sandbox_failures_total", reason=r) for r in cases)
    await clean.run(["false"], cwd=tmp_path, timeout_s=1, memory_mb=64)
    assert sum(value("soma_sandbox_failures_total", reason=r) for r in cases) == total


def test_worker_metrics_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start_metrics_server(port, addr="127.0.0.1")
    start_metrics_server(port, addr="127.0.0.1")  # idempotent
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "soma_worker_activities_total" in text or "# HELP soma_worker_activities" in text
    assert "soma_task_queue_backlog" in text


async def test_backlog_is_sampled(temporal_client: Client) -> None:
    found = await sample_backlog(temporal_client, "telemetry-empty-queue")
    # Servers without report_stats give nothing; those with it report an empty queue.
    assert found in ({}, {"workflow": 0, "activity": 0})


@pytest.mark.slow
def test_project_run_moves_the_counters(
    engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    model_table["synthetic"] = SyntheticModel()
    succeeded = value("soma_projects_total", status="succeeded")
    tokens_in = value("soma_model_tokens_total", model="synthetic", direction="input")
    tokens_out = value("soma_model_tokens_total", model="synthetic", direction="output")
    written = value("soma_tool_calls_total", tool="fs.write", effect="ok")
    allowed = value("soma_tool_calls_total", tool="fs.write", effect="allow")
    models = value("soma_worker_activities_total", activity="call_model", outcome="ok")

    final = run_project(engine_gateway)
    assert final["status"] == "succeeded", final

    assert value("soma_projects_total", status="succeeded") == succeeded + 1
    assert value("soma_model_tokens_total", model="synthetic", direction="input") > tokens_in
    assert value("soma_model_tokens_total", model="synthetic", direction="output") > tokens_out
    assert value("soma_tool_calls_total", tool="fs.write", effect="ok") > written
    assert value("soma_tool_calls_total", tool="fs.write", effect="allow") > allowed
    assert value("soma_worker_activities_total", activity="call_model", outcome="ok") > models
    exposed = httpx.get(f"{engine_gateway.url}/metrics").text
    assert 'soma_projects_total{status="succeeded"}' in exposed
