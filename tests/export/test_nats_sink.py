"""NatsSink against a real JetStream: stream setup, routing, message format, dedupe, errors."""

from __future__ import annotations

import json
import socket

import pytest
from nats.js.api import StreamConfig

from soma.export import MSG_ID_HEADER, EventExportError, dedupe_key
from soma.export.nats_sink import NatsSink, subject_token
from soma.store import Store
from tests.export import Bus, add_events


async def test_publish_creates_stream_and_routes_each_tenant_to_its_subjects(
    bus: Bus, store: Store
) -> None:
    add_events(store, "p-acme", "acme", 3)
    add_events(store, "p.globex", "globex", 2)
    events = store.events_after(0, 100)
    sink = bus.sink()
    try:
        await sink.publish(events)
    finally:
        await sink.close()

    info = await bus.js.stream_info(bus.stream)
    assert info.config.subjects == [f"{bus.prefix}.>"]
    assert info.config.duplicate_window == pytest.approx(120.0)
    stored = await bus.messages()
    assert [json.loads(m.data or b"")["id"] for m in stored] == [e.id for e in events]
    subjects = [m.subject for m in stored]
    assert subjects == [f"{bus.prefix}.acme.p-acme"] * 3 + [f"{bus.prefix}.globex.p_globex"] * 2
    first, record = stored[0], events[0]
    assert (
        (first.headers or {})[MSG_ID_HEADER] == dedupe_key(record.id) == f"soma-event-{record.id}"
    )
    body = json.loads(first.data or b"")
    assert body == json.loads(record.model_dump_json())
    assert body["tenant_id"] == "acme"
    assert body["data"] == {"i": 0}
    assert sink.stored == 5
    assert sink.duplicates == 0


async def test_republishing_a_batch_is_dropped_by_the_duplicate_window(
    bus: Bus, store: Store
) -> None:
    add_events(store, "p1", "acme", 10)
    events = store.events_after(0, 100)
    sink = bus.sink()
    try:
        await sink.publish(events[:4])
        await sink.publish(events)  # a retry after a failure part-way
        await sink.publish(events)
    finally:
        await sink.close()
    assert len(await bus.messages()) == 10
    assert (sink.stored, sink.duplicates) == (10, 14)


async def test_an_existing_stream_that_misses_our_subjects_is_an_actionable_error(
    bus: Bus, store: Store
) -> None:
    await bus.js.add_stream(StreamConfig(name=bus.stream, subjects=[f"other{bus.stream}.>"]))
    add_events(store, "p1", "acme", 1)
    sink = bus.sink()
    with pytest.raises(EventExportError, match="does not capture") as caught:
        await sink.publish(store.events_after(0))
    assert "SOMA_NATS_STREAM" in (caught.value.hint or "")
    await sink.close()


async def test_unreachable_server_is_an_actionable_error(store: Store) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    add_events(store, "p1", "acme", 1)
    sink = NatsSink(f"nats://127.0.0.1:{port}", reconnect_attempts=1, reconnect_wait_s=0)
    with pytest.raises(EventExportError, match="cannot connect to NATS") as caught:
        await sink.publish(store.events_after(0))
    assert "SOMA_EVENT_EXPORT=none" in (caught.value.hint or "")
    await sink.close()


def test_subject_tokens_are_made_safe() -> None:
    assert subject_token("acme") == "acme"
    assert subject_token("a.b*c>d e") == "a_b_c_d_e"
    assert subject_token("") == "_"
