"""Tailing the events table from background consumers: the notifier and the event exporter.

Each consumer keeps its position in ``event_cursors`` and moves it with a compare-and-set, so
two processes running the same consumer never both advance past the same events (one wins, the
other re-reads), and a consumer that dies before advancing re-delivers: at-least-once.

Event ids come from one sequence, but on PostgreSQL concurrent transactions may commit out of
id order; reading only events older than a short settle time keeps a slow commit from being
skipped (SQLite serialises writers, so its ids always commit in order).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from soma.store.records import EventRecord
from soma.store.tables import Event, EventCursor, utcnow

POSTGRES_SETTLE = timedelta(seconds=2)


class CursorMixin:
    """The event-tailing methods of :class:`soma.store.Store`. For workers only: these read
    every tenant's events."""

    # Provided by Store.
    def _read(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    @property
    def dialect(self) -> str:
        raise NotImplementedError

    def events_after(self, after_id: int, limit: int = 500) -> list[EventRecord]:
        """Every tenant's events with ``id > after_id``, oldest first."""
        query = select(Event).where(Event.id > after_id)
        if self.dialect == "postgresql":
            query = query.where(Event.created_at <= utcnow() - POSTGRES_SETTLE)
        query = query.order_by(Event.id).limit(limit)
        with self._read() as session:
            return [EventRecord.model_validate(e) for e in session.scalars(query)]

    def event_cursor(self, consumer: str) -> int:
        """The last event id the consumer has finished with (0: none yet)."""
        with self._read() as session:
            found = session.get(EventCursor, consumer)
            return found.last_event_id if found is not None else 0

    def advance_event_cursor(self, consumer: str, expected: int, new: int) -> bool:
        """Move the cursor from ``expected`` to ``new``; False if another process moved it
        first (the caller then re-reads from where that one got to)."""
        try:
            with self._write() as session:
                if session.get(EventCursor, consumer) is None:
                    if expected != 0:
                        return False
                    session.add(EventCursor(consumer=consumer, last_event_id=new))
                    return True
                moved = session.execute(
                    update(EventCursor)
                    .where(EventCursor.consumer == consumer, EventCursor.last_event_id == expected)
                    .values(last_event_id=new, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                return bool(getattr(moved, "rowcount", 0))
        except IntegrityError:  # another process created the cursor at the same moment
            return False
