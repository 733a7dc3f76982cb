"""EventExporter end to end: real store, real JetStream, at-least-once with de-duplication."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from soma.export import (
    Deduplicator,
    EventExporter,
    EventExportError,
    MemorySink,
    build_exporter,
    dedupe_key,
    message_key,
)
from soma.export.nats_sink import NatsSink
from soma.settings import Settings
from soma.store import EventRecord, Store
from tests.export import Bus, add_events, eventually


async def drain(exporter: EventExporter, last_id: int) -> None:
    """run_once until the exporter's cursor reaches ``last_id``."""
    for _ in range(100):
        if exporter.store.event_cursor(exporter.consumer) >= last_id:
            return
        await exporter.run_once()
    pytest.fail("exporter did not reach the last event")


def ids(messages: Sequence[object]) -> list[int]:
    return [json.loads(m.data)["id"] for m in messages]  # type: ignore[attr-defined]


async def test_every_event_is_delivered_once_in_order(bus: Bus, store: Store) -> None:
    expected = add_events(store, "p-a", "acme", 60) + add_events(store, "p-g", "globex", 45)
    exporter = EventExporter(store, bus.sink(), batch=50)
    assert await exporter.run_once() == 50
    await drain(exporter, expected[-1])
    assert await exporter.run_once() == 0
    await exporter.sink.close()

    stored = await bus.messages()
    assert ids(stored) == expected
    assert store.event_cursor("export:nats") == expected[-1]


class FailingMidBatch:
    """Publishes the first ``keep`` events of its first batch through ``inner``, then raises:
    the broker has some of the batch, the exporter's cursor has none of it."""

    def __init__(self, inner: NatsSink, keep: int) -> None:
        self.inner = inner
        self.keep = keep
        self.failed = False

    async def publish(self, batch: Sequence[EventRecord]) -> None:
        if not self.failed:
            self.failed = True
            await self.inner.publish(batch[: self.keep])
            raise EventExportError("connection lost mid-batch")
        await self.inner.publish(batch)

    async def close(self) -> None:
        await self.inner.close()


async def test_sink_failing_mid_batch_then_recovering_delivers_everything_once(
    bus: Bus, store: Store
) -> None:
    expected = add_events(store, "p1", "acme", 30)
    inner = bus.sink()
    exporter = EventExporter(store, FailingMidBatch(inner, keep=12), batch=100)

    with pytest.raises(EventExportError):
        await exporter.run_once()
    assert store.event_cursor("export:nats") == 0  # kept: the batch will be retried
    assert await exporter.run_once() == 30
    await inner.close()

    # JetStream dropped the 12 re-published events by their Nats-Msg-Id.
    assert ids(await bus.messages()) == expected
    assert (inner.stored, inner.duplicates) == (30, 12)

    # A consumer that crashes after handling some messages but before acking them gets them
    # again; the Deduplicator makes it handle each event once.
    sub = await bus.js.pull_subscribe(
        f"{bus.prefix}.>",
        stream=bus.stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=5),
    )
    dedup = Deduplicator(capacity=1000)
    handled: list[int] = []
    redelivered = 0
    while len(handled) < len(expected) or redelivered < 5:
        for msg in await sub.fetch(50, timeout=2):
            key = message_key(msg.headers, msg.data)
            if dedup.seen(key):
                redelivered += 1
                await msg.ack()
                continue
            handled.append(json.loads(msg.data)["id"])
            dedup.add(key)
            if msg.metadata.num_delivered == 1 and len(handled) <= 5:
                await msg.nak()  # "crashed" before the ack: JetStream redelivers it
            else:
                await msg.ack()
    await sub.unsubscribe()
    assert sorted(handled) == expected
    assert redelivered == 5


class Gate:
    """Holds each racer's first publish until both have read the same cursor."""

    def __init__(self, inner: NatsSink, barrier: asyncio.Barrier) -> None:
        self.inner = inner
        self.barrier = barrier
        self.first = True

    async def publish(self, batch: Sequence[EventRecord]) -> None:
        if self.first:
            self.first = False
            await self.barrier.wait()
        await self.inner.publish(batch)

    async def close(self) -> None:
        await self.inner.close()


async def test_two_exporters_racing_on_one_cursor_store_each_event_once(
    bus: Bus, store: Store
) -> None:
    expected = add_events(store, "p1", "acme", 90)
    barrier = asyncio.Barrier(2)
    sinks = [bus.sink(), bus.sink()]  # two connections, as from two processes
    racers = [EventExporter(store, Gate(sink, barrier), batch=40) for sink in sinks]

    await asyncio.gather(*(drain(racer, expected[-1]) for racer in racers))
    for sink in sinks:
        await sink.close()

    assert ids(await bus.messages()) == expected
    assert store.event_cursor("export:nats") == expected[-1]
    # Both published the first batch; JetStream kept one copy of each event.
    assert sum(s.duplicates for s in sinks) >= 40
    assert sum(s.stored for s in sinks) == 90


async def test_a_restarted_exporter_resumes_from_the_cursor(bus: Bus, store: Store) -> None:
    first = add_events(store, "p1", "acme", 25)
    before = EventExporter(store, bus.sink(), batch=10)
    await drain(before, first[-1])
    await before.sink.close()

    later = add_events(store, "p2", "acme", 7)
    sink = bus.sink()
    after = EventExporter(store, sink, batch=10)  # a new process, same consumer name
    assert await after.run_once() == 7
    await sink.close()

    assert (sink.stored, sink.duplicates) == (7, 0)  # nothing before the cursor re-sent
    assert ids(await bus.messages()) == first + later


async def test_run_backs_off_on_failures_then_exports_and_stops(store: Store) -> None:
    expected = add_events(store, "p1", "acme", 12)
    sink = MemorySink()
    sink.fail_next = 2
    exporter = EventExporter(store, sink, batch=5, poll_s=0.005)
    stop = asyncio.Event()
    task = asyncio.create_task(exporter.run(stop))

    async def exported_all() -> bool:
        return [e.id for e in sink.events] == expected

    await eventually(exported_all)
    more = add_events(store, "p2", "acme", 3)

    async def exported_more() -> bool:
        return [e.id for e in sink.events] == expected + more

    await eventually(exported_more)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert sink.closed
    assert store.event_cursor("export:nats") == more[-1]


def test_build_exporter_follows_settings(tmp_path: Path, store: Store) -> None:
    assert build_exporter(store, Settings(home=tmp_path)) is None
    exporter = build_exporter(
        store,
        Settings(home=tmp_path, event_export="nats", nats_url="nats://n:4222", nats_stream="EV"),
    )
    assert exporter is not None
    assert exporter.consumer == "export:nats"
    assert isinstance(exporter.sink, NatsSink)
    assert (exporter.sink.url, exporter.sink.stream) == ("nats://n:4222", "EV")


def test_deduplicator_is_a_bounded_lru() -> None:
    dedup = Deduplicator(capacity=2)
    assert dedup.first_time("a")
    assert dedup.first_time("b")
    assert not dedup.first_time("a")  # refreshes "a"
    assert dedup.first_time("c")  # evicts "b", the least recently seen
    assert len(dedup) == 2
    assert dedup.seen("a")
    assert not dedup.seen("b")


def test_message_key_prefers_the_header_and_falls_back_to_the_body() -> None:
    assert message_key({"Nats-Msg-Id": "soma-event-7"}, b"{}") == "soma-event-7"
    assert message_key(None, b'{"id": 9}') == dedupe_key(9)
    with pytest.raises(EventExportError, match="dedupe key"):
        message_key({}, b"not json")
