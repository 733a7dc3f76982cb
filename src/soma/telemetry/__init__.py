"""Operations telemetry: OpenTelemetry traces, Prometheus metrics, structured logs.

``init_process(settings)`` is what a process calls once at start (`soma serve`, `soma worker`);
library code only uses the helpers (spans, counters) and never configures anything itself.
See ``docs/observability.md``.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from soma.settings import Settings
from soma.telemetry.logs import configure_logging
from soma.telemetry.metrics import record_cost
from soma.telemetry.tracing import setup_tracing

__all__ = ["configure_logging", "init_process", "record_cost", "setup_tracing"]


def init_process(settings: Settings) -> TracerProvider:
    """Logging first (so tracing's own warnings are formatted), then tracing."""
    configure_logging(settings)
    return setup_tracing(settings)
