"""An in-memory stand-in for the event log, for benchmarks that measure the engine without
the database (numbers events exactly like the real log does)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from app.core.db.base import utcnow
from app.core.events import Event
from app.core.ids import uuid7_batch


class InMemoryEventLog:
    def __init__(self) -> None:
        self.user_seq: dict[int, int] = {}
        self.run_seq: dict[uuid.UUID, int] = {}
        self.count = 0

    async def __call__(self, events: Sequence[Event]) -> None:
        now = utcnow()
        persisted = [event for event in events if event.persisted]
        for event, event_id in zip(persisted, uuid7_batch(len(persisted)), strict=True):
            event.id = event_id
            event.created_at = now
            event.user_seq = self.user_seq[event.user_id] = self.user_seq.get(event.user_id, 0) + 1
            if event.run_id is not None:
                event.run_seq = self.run_seq[event.run_id] = self.run_seq.get(event.run_id, 0) + 1
            self.count += 1
