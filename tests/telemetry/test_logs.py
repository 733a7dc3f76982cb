"""Structured logs: JSON lines, trace ids of the current span, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from soma.settings import Settings
from soma.telemetry.logs import configure_logging, get_logger, redact_text
from soma.telemetry.tracing import tracer

API_KEY = "soma_0123456789ab_" + "S3cr3tPart" * 4 + "xyz"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNlY3JldA"

pytestmark = pytest.mark.usefixtures("restore_logging")


def _json_logging(level: str = "DEBUG") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level=level), stream=stream)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_stdlib_records_are_json_lines() -> None:
    stream = _json_logging("INFO")
    logging.getLogger("soma.test").info("started %s workers", 3)
    logging.getLogger("soma.test").debug("not at INFO")
    (line,) = _lines(stream)
    assert line["event"] == "started 3 workers"
    assert line["level"] == "info"
    assert line["logger"] == "soma.test"
    assert "timestamp" in line


def test_api_keys_and_bearer_tokens_never_reach_the_output() -> None:
    stream = _json_logging()
    logging.getLogger("some.library").warning("auth failed for %s (header %s)", API_KEY, BEARER)
    get_logger("soma.test").warning(
        "request", headers={"Authorization": BEARER}, token="plain-token-value", key=API_KEY
    )
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logging.getLogger("soma.test").exception("failed with password=hunter2")
    output = stream.getvalue()
    for secret in ("S3cr3tPart", "eyJhbGci", "plain-token-value", "hunter2"):
        assert secret not in output, output
    lines = _lines(stream)
    assert "soma_0123456789ab_***" in lines[0]["event"]  # the key id stays, for debugging
    assert "Bearer ***" in lines[0]["event"]
    assert lines[1]["headers"] == {"Authorization": "***"}
    assert lines[1]["token"] == "***"
    assert "ValueError" in lines[2]["exception"]


def test_counts_named_like_tokens_are_not_masked() -> None:
    stream = _json_logging()
    get_logger("soma.test").info("usage", input_tokens=12, max_tokens=100)
    (line,) = _lines(stream)
    assert line["input_tokens"] == 12
    assert line["max_tokens"] == 100


def test_lines_carry_the_current_span(spans: InMemorySpanExporter) -> None:
    stream = _json_logging()
    with tracer().start_as_current_span("work") as span:
        logging.getLogger("soma.test").info("inside")
    logging.getLogger("soma.test").info("outside")
    inside, outside = _lines(stream)
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_console_format_is_redacted_too() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="console"), stream=stream)
    logging.getLogger("soma.test").warning("key %s", API_KEY)
    assert "S3cr3tPart" not in stream.getvalue()
    assert "soma_0123456789ab_***" in stream.getvalue()


def test_reconfiguring_replaces_the_handler() -> None:
    first = _json_logging()
    second = _json_logging()
    logging.getLogger("soma.test").info("once")
    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


def test_redact_text_shapes() -> None:
    text = "sk-abcdefghijklmnopqrstuv ghp_abcdefghijklmnopqrstuvwxyz AKIAABCDEFGHIJKLMNOP token=abc"
    masked = redact_text(text)
    assert "abcdefghijklmnop" not in masked
    assert "AKIAABCDEFGHIJKLMNOP" not in masked
    assert "token=***" in masked
