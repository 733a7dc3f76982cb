"""Where exported events go: a small ``EventSink`` protocol, its error, and an in-memory double.

The exporter only needs "publish this batch, durably, or raise": anything that raises keeps the
exporter's cursor where it was, so the same events are offered again (at-least-once). Sinks must
therefore be safe to re-publish to; :func:`dedupe_key` is the stable key that makes that so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from soma.errors import SomaError
from soma.store.records import EventRecord

#: The header carrying :func:`dedupe_key`; JetStream de-duplicates on it within its window.
MSG_ID_HEADER = "Nats-Msg-Id"


def dedupe_key(event_id: int) -> str:
    """The stable identity of one exported event (``soma-event-<id>``).

    Derived only from the store's event id, so a re-publish after a crash, a second exporter
    racing on the same cursor, or a consumer's redelivery all carry the same key.
    """
    return f"soma-event-{event_id}"


class EventExportError(SomaError):
    """Exporting events failed; the exporter keeps its cursor and retries the batch."""


@runtime_checkable
class EventSink(Protocol):
    """A destination for the store's event log."""

    async def publish(self, batch: Sequence[EventRecord]) -> None:
        """Publish ``batch`` (oldest first) durably, or raise.

        Returning means every event in the batch is stored by the destination; raising (any
        exception, ideally :class:`EventExportError`) means some may not be, and the whole batch
        will be offered again.
        """
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


class MemorySink:
    """A test double: records published batches; ``fail_next`` makes the next publishes raise."""

    def __init__(self) -> None:
        self.events: list[EventRecord] = []
        self.batches: int = 0
        self.fail_next: int = 0
        self.closed = False

    async def publish(self, batch: Sequence[EventRecord]) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise EventExportError("memory sink told to fail", hint="this is a test double")
        self.events.extend(batch)
        self.batches += 1

    async def close(self) -> None:
        self.closed = True
