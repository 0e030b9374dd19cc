"""Writing events to `event_logs` with gapless sequence numbers.

`user_seq` and `run_seq` come from counters on the `users` and `runs` rows, bumped with
UPDATE … RETURNING inside the transaction that inserts the events. The UPDATE row-locks the
counter until commit (SQLite: the whole database), so

* two writers can never hand out the same number (the unique constraints back this up), and
* when an event with `user_seq = n` is visible, every smaller `user_seq` of that user is
  committed too. The tunnel relies on this to fill a gap from the database at once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bus.state import apply_state_ops
from app.core.db.base import utcnow
from app.core.events.model import Event
from app.models.event_log import EventLog
from app.models.run import Run
from app.models.user import User


class EventLogError(Exception):
    pass


async def _bump(session: AsyncSession, model: Any, key: Any, count: int) -> int:
    """Reserve `count` numbers on a counter row; returns the first one."""
    stmt = (
        update(model).where(model.id == key)
        .values(last_event_seq=model.last_event_seq + count)
        .returning(model.last_event_seq)
        .execution_options(synchronize_session=False)
    )
    last = (await session.execute(stmt)).scalar_one_or_none()
    if last is None:
        raise EventLogError(f"no {model.__tablename__} row {key} to number events for")
    return int(last) - count + 1


async def write_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """Number and insert persisted events (and apply their state ops) in `session`'s
    transaction. Fills in id, user_seq, run_seq and created_at on each event."""
    persisted = [event for event in events if event.persisted]
    if not persisted:
        return
    next_user_seq: dict[int, int] = {}
    for user_id, count in sorted(Counter(e.user_id for e in persisted).items()):
        next_user_seq[user_id] = await _bump(session, User, user_id, count)
    next_run_seq: dict[uuid.UUID, int] = {}
    run_counts = Counter(e.run_id for e in persisted if e.run_id is not None)
    for run_id, count in sorted(run_counts.items(), key=lambda item: str(item[0])):
        next_run_seq[run_id] = await _bump(session, Run, run_id, count)

    now = utcnow()
    rows = []
    for event in persisted:
        event.id = uuid.uuid4()
        event.created_at = now
        event.user_seq = next_user_seq[event.user_id]
        next_user_seq[event.user_id] += 1
        if event.run_id is not None:
            event.run_seq = next_run_seq[event.run_id]
            next_run_seq[event.run_id] += 1
        rows.append({
            "id": event.id, "event_name": event.type, "payload": event.payload,
            "user_id": event.user_id, "project_id": event.project_id, "run_id": event.run_id,
            "run_seq": event.run_seq, "user_seq": event.user_seq,
            "session_id": event.session_id, "created_at": now,
        })
    await session.execute(insert(EventLog), rows)
    ops = [op for event in persisted for op in event.state]
    if ops:
        await apply_state_ops(session, ops)


def forget_numbers(events: Sequence[Event]) -> None:
    """Undo what write_events filled in, after its transaction rolled back."""
    for event in events:
        event.id = event.user_seq = event.run_seq = event.created_at = None
