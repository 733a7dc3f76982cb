"""Publishing the event log to NATS JetStream.

Each event becomes one JSON message on ``<prefix>.<tenant>.<project>`` (default prefix
``soma.events``) with a ``Nats-Msg-Id`` header of ``soma-event-<id>``: JetStream drops a
re-published event within the stream's duplicate window, so the exporter's retries and a second
exporter racing on the same cursor do not store an event twice. A batch is written in order on one
connection and the sink returns only once JetStream acked every message, so "returned" means
"stored": the exporter may then move its cursor.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from soma.export.sink import MSG_ID_HEADER, EventExportError, dedupe_key
from soma.store.records import EventRecord

log = logging.getLogger("soma.export")

DEFAULT_PREFIX = "soma.events"
# NATS subject tokens may not contain separators, wildcards or whitespace.
_UNSAFE_TOKEN = re.compile(r"[.*>\s]")


def subject_token(value: str) -> str:
    """``value`` made safe as one subject token (``.``, ``*``, ``>`` and blanks become ``_``).

    The message body keeps the exact tenant and project ids; the subject is for routing.
    """
    return _UNSAFE_TOKEN.sub("_", value) or "_"


class NatsSink:
    """An :class:`~soma.export.sink.EventSink` on a JetStream stream; connects lazily."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "SOMA_EVENTS",
        subject_prefix: str = DEFAULT_PREFIX,
        duplicate_window_s: float = 120.0,
        ack_timeout_s: float = 10.0,
        connect_timeout_s: int = 2,
        reconnect_attempts: int = 60,
        reconnect_wait_s: int = 2,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix.rstrip(".")
        self.duplicate_window_s = duplicate_window_s
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_wait_s = reconnect_wait_s
        #: Messages JetStream stored, and re-publishes it recognised as duplicates and dropped.
        self.stored = 0
        self.duplicates = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    def subject_for(self, event: EventRecord) -> str:
        """``<prefix>.<tenant>.<project>``: consumers subscribe per tenant or per project."""
        return (
            f"{self.subject_prefix}.{subject_token(event.tenant_id)}"
            f".{subject_token(event.project_id)}"
        )

    async def connect(self) -> JetStreamContext:
        """Connect (again, if the connection was closed) and make sure the stream exists."""
        async with self._lock:
            if self._nc is not None and self._js is not None and not self._nc.is_closed:
                return self._js
            try:
                nc = await nats.connect(
                    servers=[self.url],
                    connect_timeout=self.connect_timeout_s,
                    max_reconnect_attempts=self.reconnect_attempts,
                    reconnect_time_wait=self.reconnect_wait_s,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
            except (OSError, NatsError, TimeoutError) as exc:
                raise EventExportError(
                    f"cannot connect to NATS at {self.url}: {exc!r}",
                    hint="start nats-server with JetStream (-js), fix SOMA_NATS_URL, or set "
                    "SOMA_EVENT_EXPORT=none",
                ) from exc
            js = nc.jetstream(timeout=self.ack_timeout_s)
            try:
                await self._ensure_stream(js)
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, js
            return js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        wanted = f"{self.subject_prefix}.>"
        try:
            try:
                info = await js.stream_info(self.stream)
            except NotFoundError:
                config = StreamConfig(
                    name=self.stream,
                    subjects=[wanted],
                    storage=StorageType.FILE,
                    duplicate_window=self.duplicate_window_s,
                    description="SomaAgentHub event log (soma.export)",
                )
                try:
                    await js.add_stream(config)
                    log.info("created JetStream stream %s for %s", self.stream, wanted)
                    return
                except NatsError:  # another exporter created it first: check what it made
                    info = await js.stream_info(self.stream)
        except NatsError as exc:
            raise EventExportError(
                f"cannot create or inspect JetStream stream {self.stream!r}: {exc!r}",
                hint="is JetStream enabled on the server (nats-server -js)?",
            ) from exc
        subjects = info.config.subjects or []
        if wanted not in subjects and f"{self.subject_prefix.split('.')[0]}.>" not in subjects:
            raise EventExportError(
                f"JetStream stream {self.stream!r} exists but does not capture {wanted!r} "
                f"(its subjects: {subjects})",
                hint=f"add {wanted!r} to the stream's subjects or set SOMA_NATS_STREAM to "
                "another stream",
            )
        if (info.config.duplicate_window or 0) <= 0:
            log.warning(
                "JetStream stream %s has no duplicate window: re-published events are stored "
                "twice; consumers must de-duplicate by Nats-Msg-Id",
                self.stream,
            )

    async def publish(self, batch: Sequence[EventRecord]) -> None:
        """Publish ``batch`` in order and wait for every ack; raise EventExportError if any
        message was not acknowledged (the exporter then retries the whole batch)."""
        if not batch:
            return
        js = await self.connect()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for event in batch:
                futures.append(
                    await js.publish_async(
                        self.subject_for(event),
                        event.model_dump_json().encode(),
                        stream=self.stream,
                        headers={MSG_ID_HEADER: dedupe_key(event.id)},
                        wait_stall=self.ack_timeout_s,
                    )
                )
            async with asyncio.timeout(self.ack_timeout_s):
                results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
        except (NatsError, TimeoutError, OSError) as exc:
            raise EventExportError(
                f"publishing {len(batch)} events (ids {batch[0].id}..{batch[-1].id}) to "
                f"JetStream stream {self.stream!r} failed: {exc!r}",
                hint=f"check the NATS server at {self.url}; the batch will be retried",
            ) from exc
        finally:
            for future in futures:  # frees the client's in-flight slots on failure
                future.cancel()
        duplicates = sum(1 for ack in results if isinstance(ack, PubAck) and ack.duplicate)
        self.duplicates += duplicates
        self.stored += len(results) - duplicates

    async def close(self) -> None:
        """Flush and close the connection. Idempotent."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            self._closing = True
            try:
                await nc.close()
            finally:
                self._closing = False

    # Connection callbacks: nats-py reconnects by itself; these only make it visible.
    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection error (%s): %r", self.url, exc)

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS at %s; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.url)
