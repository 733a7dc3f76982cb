"""Helpers shared by the event export tests: a real NATS JetStream at SOMA_TEST_NATS_URL
(default nats://127.0.0.1:4222) and a unique stream + subject prefix per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from soma.export.nats_sink import NatsSink
from soma.store import Store

NATS_URL = os.environ.get("SOMA_TEST_NATS_URL", "nats://127.0.0.1:4222")
START_HINT = (
    "start it with: start-stop-daemon --start --oknodo --background --exec "
    "/usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server "
    "-l /var/log/nats-server.log"
)


@dataclass
class Bus:
    """A connection to the test NATS server and this test's own stream and subject prefix."""

    nc: Client
    js: JetStreamContext
    stream: str
    prefix: str

    def sink(self, **options: Any) -> NatsSink:
        return NatsSink(NATS_URL, stream=self.stream, subject_prefix=self.prefix, **options)

    async def messages(self) -> list[RawStreamMsg]:
        """Every message the stream holds, in stream order."""
        info = await self.js.stream_info(self.stream)
        first, last = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0:
            return []
        return [await self.js.get_msg(self.stream, seq) for seq in range(first, last + 1)]


@asynccontextmanager
async def open_bus() -> AsyncIterator[Bus]:
    """Body of the ``bus`` fixtures: fails (not skips) when NATS is down, since CI has it."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        nc = await nats.connect(
            NATS_URL,
            connect_timeout=2,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=quiet,
        )
    except Exception as exc:
        pytest.fail(f"NATS JetStream is not reachable at {NATS_URL} ({exc!r}); {START_HINT}")
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:12]
    bus = Bus(nc=nc, js=js, stream=f"TEST_{tag}", prefix=f"t{tag}.events")
    try:
        yield bus
    finally:
        with contextlib.suppress(Exception):  # the test may not have created it
            await js.delete_stream(bus.stream)
        await nc.close()


def add_events(store: Store, project_id: str, tenant: str, count: int) -> list[int]:
    """Create a project for ``tenant`` and append ``count`` events; their ids."""
    store.create_project(project_id, f"goal of {project_id}", tenant_id=tenant)
    return [
        store.add_event(project_id, "node.step", f"step {i}", data={"i": i}, tenant_id=tenant)
        for i in range(count)
    ]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Poll ``check`` until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.01)
