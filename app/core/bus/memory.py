"""An in-memory stand-in for the event log, for benchmarks that measure the engine without
the database (numbers events exactly like the real log does)."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.db.base import utcnow
from app.core.events import Event, EventTypes
from app.core.ids import uuid7_batch


class InMemoryEventLog:
    def __init__(self) -> None:
        self.user_seq: dict[int, int] = {}
        self.run_seq: dict[int, int] = {}  # by run_id.int
        self.count = 0

    async def __call__(self, events: Sequence[Event]) -> None:
        now = utcnow()
        persisted_types = EventTypes.PERSISTED
        persisted = [event for event in events if event.type in persisted_types]
        user_seq, run_seq = self.user_seq, self.run_seq
        for event, event_id in zip(persisted, uuid7_batch(len(persisted)), strict=True):
            event.id = event_id
            event.created_at = now
            event.user_seq = user_seq[event.user_id] = user_seq.get(event.user_id, 0) + 1
            run_id = event.run_id
            if run_id is not None:
                # Keyed by the id's integer: a plain uuid.UUID hashes in Python (the ids
                # app.core.ids makes hash in C, but a caller may pass either).
                key = run_id.int
                event.run_seq = run_seq[key] = run_seq.get(key, 0) + 1
        self.count += len(persisted)
