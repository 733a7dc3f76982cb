"""The event log's background consumers, run beside a worker: the notifier (tenants' webhook,
Slack and email rules) and the event exporter (NATS JetStream).

Both tail the store's events table through their own cursors, so any number of worker processes
may run them: claims and compare-and-set cursors keep a notification from going out twice, and
the exporter's dedupe keys let JetStream and consumers drop a re-published event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from soma.export.exporter import build_exporter
from soma.notify.dispatcher import build_notifier
from soma.settings import Settings
from soma.store import Store

log = logging.getLogger(__name__)
_STOP_WAIT_S = 10.0


@asynccontextmanager
async def background_consumers(
    store: Store, settings: Settings, secret_key: bytes
) -> AsyncIterator[list[str]]:
    """Runs the consumers the settings enable while the block runs; yields their names."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    notifier = build_notifier(store, settings, secret_key)
    if notifier is not None:
        tasks.append(asyncio.create_task(notifier.run(stop), name="notifier"))
    exporter = build_exporter(store, settings)
    if exporter is not None:
        tasks.append(asyncio.create_task(exporter.run(stop), name=exporter.consumer))
    try:
        yield [task.get_name() for task in tasks]
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_STOP_WAIT_S)
            for task in pending:
                log.warning(
                    "%s did not stop within %.0f s; cancelling", task.get_name(), _STOP_WAIT_S
                )
                task.cancel()
