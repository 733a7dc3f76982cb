"""OpenTelemetry tracing: one tracer provider per process, chosen by settings.

``SOMA_OTEL_EXPORTER``:

- ``none`` (default): spans are not sampled, so nothing is recorded or exported, but trace
  context is still created and propagated (through HTTP and Temporal headers), which keeps the
  ``trace_id`` in log lines useful for following one request across gateway and workers.
- ``console``: finished spans are printed as JSON (debugging).
- ``otlp``: spans are batched to an OTLP/HTTP collector at ``SOMA_OTEL_ENDPOINT``.

OpenTelemetry allows the global provider to be set once per process; ``setup_tracing`` sets it
the first time and afterwards only adds exporters to the provider it installed, so tests and
embedders can call it again without the SDK's "overriding is not allowed" warning.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from soma import __version__
from soma.settings import Settings

TRACER_NAME = "soma"

_lock = threading.Lock()
_installed: TracerProvider | None = None


def setup_tracing(settings: Settings, *, exporter: SpanExporter | None = None) -> TracerProvider:
    """Install (once) and return the process's tracer provider.

    ``exporter`` overrides the settings' exporter and is attached with a synchronous processor,
    so a test's ``InMemorySpanExporter`` sees a span as soon as it ends.
    """
    global _installed
    with _lock:
        provider = _installed
        if provider is None:
            provider = TracerProvider(
                resource=Resource.create(
                    {"service.name": settings.otel_service_name, "service.version": __version__}
                ),
                sampler=_Switch(),
            )
            trace.set_tracer_provider(provider)
            _installed = provider
        processor: SpanProcessor | None = None
        if exporter is not None:
            processor = SimpleSpanProcessor(exporter)
        elif settings.otel_exporter == "console":
            processor = SimpleSpanProcessor(ConsoleSpanExporter())
        elif settings.otel_exporter == "otlp":
            processor = BatchSpanProcessor(_otlp_exporter(settings))
        if processor is not None:
            provider.add_span_processor(processor)
            sampler = provider.sampler
            if isinstance(sampler, _Switch):
                sampler.recording = True
        return provider


def tracer() -> trace.Tracer:
    """Soma's tracer; until ``setup_tracing`` runs it is the API's no-op proxy (no cost)."""
    return trace.get_tracer(TRACER_NAME, __version__)


class _Switch(Sampler):
    """Samples nothing until an exporter is attached, then everything (parent-based, so a
    caller's unsampled ``traceparent`` is respected). A switch rather than a fixed sampler
    because tracers capture the provider's sampler when they are created."""

    def __init__(self) -> None:
        self.recording = False
        self._on = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._on if self.recording else ALWAYS_OFF
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "SomaSwitch(on)" if self.recording else "SomaSwitch(off)"


def _otlp_exporter(settings: Settings) -> SpanExporter:
    # Imported here: the OTLP exporter pulls in protobuf, which a console-only process skips.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT or uses localhost:4318.
    return OTLPSpanExporter(endpoint=settings.otel_endpoint)
