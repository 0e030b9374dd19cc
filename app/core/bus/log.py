"""Writing events to `event_logs` with gapless sequence numbers.

`user_seq` and `run_seq` come from counters on the `users` and `runs` rows, bumped with
UPDATE … RETURNING inside the transaction that inserts the events. The UPDATE row-locks the
counter until commit (SQLite: the whole database), so

* two writers can never hand out the same number (the unique constraints back this up), and
* when an event with `user_seq = n` is visible, every smaller `user_seq` of that user is
  committed too. The tunnel relies on this to fill a gap from the database at once.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bus.state import apply_state_ops
from app.core.db.base import utcnow
from app.core.db.bulk import driver_connection, insert_many
from app.core.events.model import Event
from app.core.ids import uuid7_batch
from app.models.event_log import EventLog
from app.models.run import Run
from app.models.user import User

_EVENTS = cast(Table, EventLog.__table__)


class EventLogError(Exception):
    pass


async def _bump(session: AsyncSession, model: Any, counts: Mapping[Any, int]) -> dict[Any, int]:
    """Reserve numbers on counter rows (key → how many); returns key → the first one.

    Rows are locked in key order, so concurrent writers can never deadlock. One row costs one
    `UPDATE … RETURNING`; several cost two statements whatever their number (PostgreSQL: an
    ordered `SELECT … FOR UPDATE`, then one `UPDATE … FROM unnest(…)`; SQLite, which locks the
    whole database: one `UPDATE … CASE id … END`) instead of one round trip per row."""
    table = model.__table__
    keys = sorted(counts)
    if len(keys) == 1:
        rows = (await session.execute(_bump_one(table), {"key": keys[0],
                                                         "n": counts[keys[0]]})).all()
        return _first_numbers(table, counts, rows)
    if session.get_bind().dialect.name == "postgresql":
        return await _bump_postgres(session, table, keys, counts)
    # SQLite locks the whole database, so no row locks to order.
    increment = case({key: counts[key] for key in keys}, value=table.c.id)
    rows = (await session.execute(
        update(table).where(table.c.id.in_(keys))
        .values(last_event_seq=table.c.last_event_seq + increment)
        .returning(table.c.id, table.c.last_event_seq))).all()
    return _first_numbers(table, counts, rows)


# Statements the writer runs for every batch are built once per table, with bound parameters:
# building, coercing and cache-keying them again each time was a fifth of a small batch's CPU.
@functools.cache
def _bump_one(table: Table) -> Any:
    return (update(table).where(table.c.id == bindparam("key"))
            .values(last_event_seq=table.c.last_event_seq + bindparam("n"))
            .returning(table.c.id, table.c.last_event_seq))


@functools.cache
def _lock_rows(table: Table) -> Any:
    return (select(table.c.id).where(table.c.id.in_(bindparam("keys", expanding=True)))
            .order_by(table.c.id).with_for_update())


@functools.cache
def _bump_many_sql(table: Table, dialect: Any) -> str:
    key_type = table.c.id.type.compile(dialect=dialect)
    return (f"UPDATE {table.name} AS t SET last_event_seq = t.last_event_seq + v.n "
            f"FROM unnest($1::{key_type}[], $2::bigint[]) AS v(id, n) WHERE t.id = v.id "
            "RETURNING t.id, t.last_event_seq")


def _first_numbers(table: Table, counts: Mapping[Any, int],
                   rows: Sequence[Any]) -> dict[Any, int]:
    """key → the first number reserved, from the (id, last_event_seq) rows updated."""
    first = {key: int(last) - counts[key] + 1 for key, last in rows}
    missing = [key for key in counts if key not in first]
    if missing:
        raise EventLogError(f"no {table.name} row {', '.join(map(str, sorted(missing)))} to "
                            "number events for")
    return first


async def _bump_postgres(session: AsyncSession, table: Table, keys: list[Any],
                         counts: Mapping[Any, int]) -> dict[Any, int]:
    """The ordered lock through the session (which begins its transaction), then the
    UPDATE as plain SQL on its asyncpg connection: asyncpg keeps it prepared, where SQLAlchemy
    built and compiled a new CASE for every batch."""
    await session.execute(_lock_rows(table), {"keys": keys})
    driver = await driver_connection(session)
    rows = await driver.fetch(_bump_many_sql(table, session.get_bind().dialect),
                              keys, [counts[key] for key in keys])
    return _first_numbers(table, counts, rows)


async def write_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """Number and insert persisted events (and apply their state ops) in `session`'s
    transaction. Fills in id, user_seq, run_seq and created_at on each event."""
    persisted = [event for event in events if event.persisted]
    if not persisted:
        return
    if session.new or session.dirty or session.deleted:
        # The statements below are Core statements, which do not autoflush: write the
        # caller's pending changes first, as the ORM statements they replace did.
        await session.flush()
    # Users before runs, each in key order: the lock order every writer follows.
    next_user_seq = await _bump(session, User, Counter(e.user_id for e in persisted))
    run_counts = Counter(e.run_id for e in persisted if e.run_id is not None)
    next_run_seq: dict[uuid.UUID, int] = (
        await _bump(session, Run, run_counts) if run_counts else {})

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
            "run_seq": event.run_seq, "user_seq": event.user_seq,
            "session_id": event.session_id, "created_at": now,
        })
    # Core rows (COPY on PostgreSQL): the ORM bulk path would redo per-row bookkeeping.
    await insert_many(session, _EVENTS, rows)
    ops = [op for event in persisted for op in event.state]
    if ops:
        await apply_state_ops(session, ops)


def forget_numbers(events: Sequence[Event]) -> None:
    """Undo what write_events filled in, after its transaction rolled back."""
    for event in events:
        event.id = event.user_seq = event.run_seq = event.created_at = None
