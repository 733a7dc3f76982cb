"""A project started over HTTP is one connected trace: request → workflows → activities →
model calls, tool calls and policy decisions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from soma.models.synthetic import SyntheticModel
from soma.settings import Settings
from soma.telemetry.tracing import setup_tracing, tracer
from tests.gateway.conftest import LiveGateway
from tests.telemetry.project_run import run_project

# Spans that belong to a project's execution (client spans of other requests, such as a
# reviewer's SignalWorkflow, belong to those requests' traces; the workflow's HandleSignal span
# joins the run's trace and links to the sender).
RUN_PREFIXES = (
    "StartWorkflow:",
    "RunWorkflow:",
    "CompleteWorkflow:",
    "StartChildWorkflow:",
    "StartActivity:",
    "RunActivity:",
    "HandleSignal:",
    "soma.",
)


@pytest.mark.slow
def test_project_run_is_one_connected_trace(
    spans: InMemorySpanExporter, engine_gateway: LiveGateway, model_table: dict[str, Any]
) -> None:
    model_table["synthetic"] = SyntheticModel()
    final = run_project(engine_gateway)
    assert final["status"] == "succeeded", final

    finished = spans.get_finished_spans()
    posts = [s for s in finished if s.name == "POST /api/v1/projects"]
    assert len(posts) == 1, [s.name for s in finished]
    root = posts[0]
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 201
    trace_id = root.context.trace_id

    run = [s for s in finished if s.name.startswith(RUN_PREFIXES)]
    strays = [s.name for s in run if s.context.trace_id != trace_id]
    assert not strays, f"spans outside the request's trace: {strays}"

    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    ids = {s.context.span_id for s in in_trace}
    orphans = [s.name for s in in_trace if s is not root and _parent(s) not in ids]
    assert not orphans, f"spans whose parent is not in the trace: {orphans}"

    names = {s.name for s in in_trace}
    for expected in (
        "StartWorkflow:ProjectWorkflow",
        "RunWorkflow:ProjectWorkflow",
        "StartChildWorkflow:CapsuleWorkflow",
        "RunWorkflow:CapsuleWorkflow",
        "RunActivity:call_model",
        "RunActivity:call_tool",
        "RunActivity:check_action",
        "soma.model",
        "soma.tool",
        "soma.constitution",
    ):
        assert expected in names, f"{expected} missing from {sorted(names)}"

    model = next(s for s in in_trace if s.name == "soma.model")
    assert model.attributes is not None
    assert model.attributes["soma.model"] == "synthetic"
    assert int(str(model.attributes["soma.model.input_tokens"])) > 0
    assert "soma.model.latency_ms" in model.attributes
    tool = next(s for s in in_trace if s.name == "soma.tool")
    assert tool.attributes is not None
    assert tool.attributes["soma.tool"] == "fs.write"
    assert tool.attributes["soma.tool.ok"] is True
    decisions = [s for s in in_trace if s.name == "soma.constitution"]
    assert all(s.attributes and "soma.constitution.effect" in s.attributes for s in decisions)


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_request_span_continues_callers_traceparent(
    spans: InMemorySpanExporter, gateway: LiveGateway
) -> None:
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    header = f"00-{caller_trace}-b7ad6b7169203331-01"
    response = httpx.get(f"{gateway.url}/healthz", headers={"traceparent": header})
    assert response.status_code == 200
    (span,) = [s for s in spans.get_finished_spans() if s.name == "GET /healthz"]
    assert format(span.context.trace_id, "032x") == caller_trace
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"


def test_setup_tracing_is_idempotent(spans: InMemorySpanExporter) -> None:
    first = setup_tracing(Settings())
    assert setup_tracing(Settings(otel_exporter="none")) is first
    with tracer().start_as_current_span("probe"):
        pass
    assert [s.name for s in spans.get_finished_spans()] == ["probe"]
