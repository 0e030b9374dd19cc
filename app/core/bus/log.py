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
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table

from app.core.bus.state import apply_state_ops
from app.core.db.base import utcnow
from app.core.db.bulk import Bulk
from app.core.events.model import Event
from app.core.ids import uuid7_batch
from app.models.event_log import EventLog
from app.models.run import Run
from app.models.user import User

_EVENTS = cast(Table, EventLog.__table__)
_USERS = cast(Table, User.__table__)
_RUNS = cast(Table, Run.__table__)


class EventLogError(Exception):
    pass


class FencedOut(EventLogError):
    """A worker wrote for a run it no longer holds: another worker took the run over."""


async def _reserve(bulk: Bulk, table: Table, counts: Mapping[Any, int]) -> dict[Any, int]:
    """Reserve numbers on counter rows (key → how many); returns key → the first one."""
    last = await bulk.add_to_counters(table, "last_event_seq", counts)
    missing = [key for key in counts if key not in last]
    if missing:
        raise EventLogError(f"no {table.name} row {', '.join(map(str, sorted(missing)))} to "
                            "number events for")
    return {key: int(last[key]) - n + 1 for key, n in counts.items()}


async def _check_fences(bulk: Bulk, events: Sequence[Event]) -> None:
    fences = {e.run_id: e.fence for e in events if e.fence is not None}
    if not fences:
        return
    attempts = await bulk.column_values(_RUNS, "attempt", list(fences))
    stale = sorted(str(run_id) for run_id, fence in fences.items()
                   if attempts.get(run_id) != fence)
    if stale:
        raise FencedOut(f"run(s) {', '.join(stale)} are held by another attempt; this "
                        "writer lost its lease")


async def write_events(bulk: Bulk, events: Sequence[Event]) -> None:
    """Number and insert persisted events (and apply their state ops) in `bulk`'s
    transaction. Fills in id, user_seq, run_seq and created_at on each event."""
    persisted = [event for event in events if event.persisted]
    if not persisted:
        # Stream deltas alone: not logged, but a fenced-out worker's must not reach the
        # tunnels either (queue mode sends them on from this transaction).
        await _check_fences(bulk, events)
        return
    # Users before runs, each in key order: the lock order every writer follows.
    next_user_seq = await _reserve(bulk, _USERS, Counter(e.user_id for e in persisted))
    run_counts = Counter(e.run_id for e in persisted if e.run_id is not None)
    next_run_seq: dict[uuid.UUID, int] = (
        await _reserve(bulk, _RUNS, run_counts) if run_counts else {})
    # The counter UPDATE above holds the run rows' locks until commit, so the attempt read
    # here cannot change before this write commits: a takeover (which raises the attempt
    # under the same lock) is either already visible, or waits for this write.
    await _check_fences(bulk, events)

    now = utcnow()
    rows = []
    for event, event_id in zip(persisted, uuid7_batch(len(persisted)), strict=True):
        event.id = event_id
        event.created_at = now
        event.user_seq = next_user_seq[event.user_id]
        next_user_seq[event.user_id] += 1
        if event.run_id is not None:
            event.run_seq = next_run_seq[event.run_id]
            next_run_seq[event.run_id] += 1
        rows.append({
            "id": event.id, "event_name": event.type, "payload": event.payload,
            "user_id": event.user_id, "project_id": event.project_id, "run_id": event.run_id,
            "flow_id": event.flow_id, "run_seq": event.run_seq, "user_seq": event.user_seq,
            "session_id": event.session_id, "created_at": now,
        })
    # Core rows (COPY on PostgreSQL): the ORM bulk path would redo per-row bookkeeping.
    await bulk.insert_many(_EVENTS, rows)
    ops = [op for event in persisted for op in event.state]
    if ops:
        await apply_state_ops(bulk, ops)


def forget_numbers(events: Sequence[Event]) -> None:
    """Undo what write_events filled in, after its transaction rolled back."""
    for event in events:
        event.id = event.user_seq = event.run_seq = event.created_at = None
