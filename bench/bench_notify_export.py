"""Event export to NATS JetStream, and notification enqueue + delivery to a webhook.

    .venv/bin/python bench/bench_notify_export.py [--events 5000] [--notifications 1000]

Both read the store's event log (SQLite under a temporary SOMA_HOME, filled before timing).

(a) Export: ``EventExporter`` + ``NatsSink`` moves ``--events`` events to the JetStream server
at ``nats://127.0.0.1:4222`` (a stream and subject prefix of their own, deleted afterwards),
calling ``run_once`` until the cursor reaches the end: store reads, publishes with every ack
awaited, and the cursor's compare-and-set. The ``memory`` row uses an in-memory sink, which is
the store's share of the cost. Without a NATS server, its rows say so.

(b) Notifications: one webhook rule (HMAC-signed) of one tenant and ``--notifications``
``review_requested`` events. ``Notifier.enqueue_new_events`` turns them into outbox rows,
``deliver_due`` (repeated until the outbox is empty) claims and POSTs them to a loopback HTTP
receiver (a ``ThreadingHTTPServer`` answering 204). The end-to-end row is enqueue plus delivery;
it runs with 8 and with 32 sends in flight. No targets are set yet: these are the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nats
from pydantic import SecretStr

from _table import print_table
from soma.export.exporter import EventExporter
from soma.export.nats_sink import NatsSink
from soma.export.sink import EventSink, MemorySink
from soma.notify.channels import WebhookChannel
from soma.notify.dispatcher import Notifier
from soma.secrets import Vault
from soma.settings import Settings
from soma.store import Store

NATS_URL = "nats://127.0.0.1:4222"
TENANT = "bench"
PROJECT = "bench-project"
SECRET_KEY = "bench-notify-export-secret-key-0123456789"
COLUMNS = ["part", "workload", "items", "ms", "items/s"]


def fill_events(store: Store, count: int, kind: str) -> None:
    for index in range(count):
        store.add_event(
            PROJECT,
            kind,
            f"bench event {index}",
            node_id=f"n{index % 16}",
            data={"index": index, "gate": 0},
            tenant_id=TENANT,
        )


@contextmanager
def open_store(home: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{home / 'soma.db'}") as store:
        store.create_tenant(TENANT, "Bench")
        store.create_project(PROJECT, "benchmark", tenant_id=TENANT, status="running")
        yield store


def row(part: str, workload: str, items: int, elapsed: float) -> tuple[object, ...]:
    return (part, workload, items, 1e3 * elapsed, items / elapsed)


# -- (a) export --------------------------------------------------------------------------------


async def export_all(store: Store, sink: EventSink, consumer: str, batch: int, total: int) -> float:
    exporter = EventExporter(store, sink, consumer=consumer, batch=batch)
    start = time.perf_counter()
    exported = 0
    try:
        while exported < total:
            done = await exporter.run_once()
            if done == 0:
                raise RuntimeError(f"export stalled after {exported} of {total} events")
            exported += done
        return time.perf_counter() - start
    finally:
        await sink.close()


async def delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def nats_reachable() -> bool:
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:
        return False
    await nc.close()
    return True


async def export_rows(events: int) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    with (
        tempfile.TemporaryDirectory(prefix="soma-bench-export-") as home,
        open_store(Path(home)) as store,
    ):
        fill_events(store, events, "node_succeeded")
        elapsed = await export_all(store, MemorySink(), "bench:memory", 500, events)
        rows.append(row("export", "memory sink, batch 500", events, elapsed))
        if not await nats_reachable():
            rows.append(("export", f"no NATS server at {NATS_URL}", 0, 0.0, 0.0))
            return rows
        for batch in (100, 500):
            tag = uuid.uuid4().hex[:10]
            stream = f"BENCH_{tag.upper()}"
            sink = NatsSink(NATS_URL, stream=stream, subject_prefix=f"bench{tag}.events")
            try:
                elapsed = await export_all(store, sink, f"bench:nats:{tag}", batch, events)
                stored = sink.stored
            finally:
                await delete_stream(stream)
            if stored != events:
                raise RuntimeError(f"JetStream stored {stored} of {events} events")
            rows.append(row("export", f"NATS JetStream, batch {batch}", events, elapsed))
    return rows


# -- (b) notifications -------------------------------------------------------------------------


@contextmanager
def receiver() -> Iterator[tuple[str, list[int]]]:
    """A loopback webhook receiver answering 204; yields its URL and a one-item counter."""
    count = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                count[0] += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/soma", count
    finally:
        server.shutdown()
        server.server_close()


async def notify_rows(notifications: int, concurrency: int) -> list[tuple[object, ...]]:
    with (
        tempfile.TemporaryDirectory(prefix="soma-bench-notify-") as home,
        open_store(Path(home)) as store,
        receiver() as (url, received),
    ):
        settings = Settings(home=Path(home), secret_key=SecretStr(SECRET_KEY))
        key = SECRET_KEY.encode()
        Vault(store, key).set(TENANT, "hooks.signing", "bench-signing-secret-0123456789")
        store.create_notification_rule(
            TENANT, "review.needed", "webhook", url, secret_name="hooks.signing"
        )
        fill_events(store, notifications, "review_requested")
        notifier = Notifier(
            store,
            settings,
            key,
            channels={"webhook": WebhookChannel()},
            backoff_base_s=0.01,
            backoff_max_s=0.1,
            concurrency=concurrency,
            max_event_age=None,
        )
        try:
            start = time.perf_counter()
            enqueued = await notifier.enqueue_new_events()
            queued = time.perf_counter()
            delivered = 0
            while delivered < notifications:
                stats = await notifier.deliver_due()
                delivered += stats.delivered
                if stats.failed:
                    raise RuntimeError(f"{stats.failed} deliveries failed")
                if not (stats.delivered or stats.retrying):
                    await asyncio.sleep(0.01)
            done = time.perf_counter()
        finally:
            await notifier.aclose()
        if enqueued != notifications or received[0] < notifications:
            raise RuntimeError(f"enqueued {enqueued}, receiver got {received[0]}")
    label = f"concurrency {concurrency}"
    return [
        row("notify", "enqueue (events → outbox)", notifications, queued - start),
        row("notify", f"deliver to webhook, {label}", notifications, done - queued),
        row("notify", f"end to end, {label}", notifications, done - start),
    ]


async def run(events: int, notifications: int) -> list[tuple[object, ...]]:
    rows = await export_rows(events)
    for concurrency in (8, 32):
        rows.extend(await notify_rows(notifications, concurrency))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000, help="events to export")
    parser.add_argument("--notifications", type=int, default=1000, help="events to notify")
    args = parser.parse_args()
    rows = asyncio.run(run(args.events, args.notifications))
    print_table("Event export and notification delivery", COLUMNS, rows)


if __name__ == "__main__":
    main()
