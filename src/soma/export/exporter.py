"""Tailing the store's event log into an :class:`~soma.export.sink.EventSink`.

The events table is the outbox: the exporter reads after its cursor, publishes the batch, and
only then moves the cursor with a compare-and-set. A crash or a sink failure between the two
leaves the cursor behind, so the batch is published again (at-least-once); a lost compare-and-set
means another exporter moved the cursor first, and this one re-reads from there. Re-publishes
carry the same dedupe key, so JetStream (within its duplicate window) and consumers (via
:class:`~soma.export.consumer.Deduplicator`) drop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Protocol

from soma.export.sink import EventSink
from soma.store.records import EventRecord

if TYPE_CHECKING:
    from soma.settings import Settings

log = logging.getLogger("soma.export")

# Re-reads after lost compare-and-sets within one run_once before yielding to the loop.
_CAS_RETRIES = 3


class EventLog(Protocol):
    """The cursor methods of :class:`soma.store.Store` the exporter uses."""

    def events_after(self, after_id: int, limit: int = 500) -> list[EventRecord]: ...

    def event_cursor(self, consumer: str) -> int: ...

    def advance_event_cursor(self, consumer: str, expected: int, new: int) -> bool: ...


class EventExporter:
    """Moves the event log into ``sink``, ``batch`` events at a time, from cursor ``consumer``.

    Store calls run in a thread so a slow database never blocks the event loop of the process
    (worker or gateway) that hosts the exporter.
    """

    def __init__(
        self,
        store: EventLog,
        sink: EventSink,
        consumer: str = "export:nats",
        batch: int = 500,
        poll_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store = store
        self.sink = sink
        self.consumer = consumer
        self.batch = batch
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s

    async def run_once(self) -> int:
        """Export the next batch after the cursor; the number of events this call committed.

        0 means nothing was pending (or other exporters kept winning the cursor). Raises what
        the sink raised, with the cursor untouched, so the batch is retried.
        """
        for _ in range(_CAS_RETRIES):
            cursor = await asyncio.to_thread(self.store.event_cursor, self.consumer)
            events = await asyncio.to_thread(self.store.events_after, cursor, self.batch)
            if not events:
                return 0
            await self.sink.publish(events)
            last = events[-1].id
            moved = await asyncio.to_thread(
                self.store.advance_event_cursor, self.consumer, cursor, last
            )
            if moved:
                log.debug("exported events %d..%d (%s)", events[0].id, last, self.consumer)
                return len(events)
            log.debug("cursor %s moved by another exporter; re-reading", self.consumer)
        return 0

    async def run(self, stop: asyncio.Event) -> None:
        """Export until ``stop`` is set, then close the sink.

        Drains without pausing while batches come back full, polls every ``poll_s`` when idle,
        and backs off exponentially (with jitter, up to ``max_backoff_s``) while the store or the
        sink fails, logging each failure; a failure never ends the loop.
        """
        failures = 0
        log.info("event export started (%s, batch %d)", self.consumer, self.batch)
        try:
            while not stop.is_set():
                try:
                    exported = await self.run_once()
                except Exception as exc:
                    failures += 1
                    delay = min(self.max_backoff_s, self.poll_s * 2**failures)
                    delay *= random.uniform(0.5, 1.0)
                    log.warning(
                        "event export failed (attempt %d), retrying in %.1fs: %s",
                        failures,
                        delay,
                        exc,
                    )
                    await _wait(stop, delay)
                    continue
                if failures:
                    log.info("event export recovered after %d failed attempts", failures)
                    failures = 0
                if exported < self.batch:
                    await _wait(stop, self.poll_s)
        finally:
            await self.sink.close()
            log.info("event export stopped (%s)", self.consumer)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def build_exporter(store: EventLog, settings: Settings) -> EventExporter | None:
    """The exporter ``settings`` ask for, or None when ``event_export`` is ``"none"``."""
    if settings.event_export == "none":
        return None
    from soma.export.nats_sink import NatsSink  # only processes that export import nats

    sink = NatsSink(
        settings.nats_url, stream=settings.nats_stream, subject_prefix=settings.nats_subject_prefix
    )
    return EventExporter(store, sink, consumer=f"export:{settings.event_export}")
