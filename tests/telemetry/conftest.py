"""Telemetry fixtures: one in-memory span exporter for the whole process.

OpenTelemetry lets a process set its global tracer provider once, so the exporter is attached
once per session and cleared around each test instead of being replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from soma.settings import Settings
from soma.telemetry.tracing import setup_tracing

# The gateway fixtures (live gateway, engine gateway) are shared with the gateway suite.
from tests.gateway.conftest import (  # noqa: F401
    engine_gateway,
    gateway,
    gateway_settings,
    model_table,
)


@pytest.fixture(scope="session")
def _session_exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    setup_tracing(Settings(otel_service_name="soma-tests"), exporter=exporter)
    return exporter


@pytest.fixture
def spans(_session_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test (and only those)."""
    _session_exporter.clear()
    yield _session_exporter
    _session_exporter.clear()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put stdlib logging and structlog back as they were after a test configures them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
