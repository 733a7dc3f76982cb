"""Exporting the store's event log to an event bus (NATS JetStream), at-least-once.

See docs/events.md: :class:`EventExporter` tails the events table with a compare-and-set
cursor, a sink (:class:`~soma.export.nats_sink.NatsSink`) publishes each event with a stable
dedupe key, and consumers drop redeliveries with :class:`Deduplicator`.
"""

from soma.export.consumer import Deduplicator, message_key
from soma.export.exporter import EventExporter, EventLog, build_exporter
from soma.export.sink import (
    MSG_ID_HEADER,
    EventExportError,
    EventSink,
    MemorySink,
    dedupe_key,
)

__all__ = [
    "MSG_ID_HEADER",
    "Deduplicator",
    "EventExportError",
    "EventExporter",
    "EventLog",
    "EventSink",
    "MemorySink",
    "build_exporter",
    "dedupe_key",
    "message_key",
]
