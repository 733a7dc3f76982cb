"""Consumer-side de-duplication of exported events.

Export is at-least-once: JetStream drops re-publishes of the same event only within its
duplicate window, and a JetStream consumer is redelivered any message it did not ack in time.
So a consumer that must act once per event remembers which keys it has processed. The key is the
message's ``Nats-Msg-Id`` header (``soma-event-<id>``), i.e. the store's event id; falling back to
the ``id`` field of the JSON body when a message lost its headers.

:class:`Deduplicator` is bounded (LRU) on purpose: redeliveries arrive soon after the original,
so the recent keys are the ones that matter. A consumer whose effects must be exactly-once across
its own restarts should instead store the event id with the effect (e.g. a unique column).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping

from soma.export.sink import MSG_ID_HEADER, EventExportError, dedupe_key


def message_key(headers: Mapping[str, str] | None, data: bytes) -> str:
    """The dedupe key of one exported message: its ``Nats-Msg-Id``, else from the body's id."""
    if headers and headers.get(MSG_ID_HEADER):
        return headers[MSG_ID_HEADER]
    try:
        body = json.loads(data)
        return dedupe_key(int(body["id"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise EventExportError(
            "message has neither a Nats-Msg-Id header nor a JSON body with an 'id'",
            hint="only messages published by soma.export carry a dedupe key",
        ) from exc


class Deduplicator:
    """Remembers the last ``capacity`` processed keys, so a redelivered event is skipped.

    Usage: ``if not dedup.seen(key): handle(msg); dedup.add(key)`` and then ack. Adding only
    after handling succeeded means a failed attempt is retried rather than skipped.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        """Whether ``key`` was processed recently (refreshes its place in the LRU)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        """Record ``key`` as processed, evicting the least recently seen key when full."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def first_time(self, key: str) -> bool:
        """Record ``key``; True if it was new. For handlers that cannot fail after this point."""
        if self.seen(key):
            return False
        self.add(key)
        return True

    def __len__(self) -> int:
        return len(self._keys)
