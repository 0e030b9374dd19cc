"""Reading the event log: the audit API and the tunnel's replay."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg
from sqlalchemy import Select, Table, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db.bulk import pooled_driver
from app.core.di import Registry
from app.core.errors import AppError
from app.core.events import Event
from app.core.ws import encode
from app.core.ws.tunnel import Outgoing
from app.models import EventLog, Flow, User


@dataclass(frozen=True)
class EventFilter:
    run_id: uuid.UUID | None = None
    flow_id: uuid.UUID | None = None
    type_prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    user_id: int | None = None  # admins only: one user's events


_EVENTS = cast(Table, EventLog.__table__)
_FETCH_AFTER_PG = """
SELECT id, event_name, payload, user_id, project_id, run_id, session_id, flow_id, user_seq,
       run_seq, created_at
  FROM event_logs WHERE user_id = $1 AND user_seq > $2 AND user_seq <= $3
 ORDER BY user_seq LIMIT $4
"""
_NO_UNTIL = 2**63 - 1  # the largest bigint: no upper bound


def event_from_row(row: Any) -> Event:
    """An Event from an `event_logs` row (an ORM EventLog, a Core row of its columns, or an
    asyncpg `_Record`)."""
    return Event(type=row.event_name, payload=row.payload, user_id=row.user_id,
                 project_id=row.project_id, run_id=row.run_id, session_id=row.session_id,
                 flow_id=row.flow_id,
                 id=row.id, user_seq=row.user_seq, run_seq=row.run_seq,
                 created_at=row.created_at)


class _Record(asyncpg.Record):
    """An asyncpg record whose columns read as attributes too, like a SQLAlchemy row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def row_to_dict(row: EventLog) -> dict[str, Any]:
    return {
        "id": str(row.id), "type": row.event_name, "payload": row.payload,
        "user_id": row.user_id, "project_id": row.project_id,
        "run_id": str(row.run_id) if row.run_id else None, "run_seq": row.run_seq,
        "flow_id": str(row.flow_id) if row.flow_id else None,
        "user_seq": row.user_seq, "session_id": row.session_id,
        "created_at": row.created_at.isoformat(),
    }


# Paging is keyset on (user_id, user_seq): unique, and for one user it is commit order.
def encode_cursor(user_id: int, user_seq: int) -> str:
    raw = json.dumps([user_id, user_seq]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        user_id, user_seq = (int(v) for v in json.loads(base64.urlsafe_b64decode(padded)))
        # Bounded like the columns (int and bigint): a bigger number is no cursor of ours.
        if not (0 <= user_id < 2**31 and 0 <= user_seq < 2**63):
            raise ValueError("out of range")
        return user_id, user_seq
    except Exception as exc:
        raise AppError("the cursor is not one this API issued", code="invalid_cursor",
                       status_code=400) from exc


class EventLogManager:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._settings = registry.get(Settings)

    def _query(self, viewer_id: int | None, filters: EventFilter) -> Select[EventLog]:
        query = select(EventLog)
        if viewer_id is not None:
            query = query.where(EventLog.user_id == viewer_id)
        elif filters.user_id is not None:
            query = query.where(EventLog.user_id == filters.user_id)
        if filters.run_id is not None:
            query = query.where(EventLog.run_id == filters.run_id)
        if filters.flow_id is not None:
            query = query.where(EventLog.flow_id == filters.flow_id)
        if filters.type_prefix:
            prefix = filters.type_prefix
            query = query.where(or_(EventLog.event_name == prefix.rstrip(".*"),
                                    EventLog.event_name.startswith(prefix.rstrip("*"),
                                                                   autoescape=True)))
        if filters.since is not None:
            query = query.where(EventLog.created_at >= filters.since)
        if filters.until is not None:
            query = query.where(EventLog.created_at < filters.until)
        return query.order_by(EventLog.user_id, EventLog.user_seq)

    async def page(self, session: AsyncSession, *, viewer_id: int | None, filters: EventFilter,
                   after: str | None, limit: int) -> tuple[list[EventLog], str | None]:
        """One page; `viewer_id` None means an admin (every user's events)."""
        query = self._query(viewer_id, filters)
        if after is not None:
            user_id, user_seq = decode_cursor(after)
            query = query.where(or_(EventLog.user_id > user_id,
                                    and_(EventLog.user_id == user_id,
                                         EventLog.user_seq > user_seq)))
        rows = list((await session.execute(query.limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].user_id, rows[-1].user_seq) if more else None
        return rows, next_cursor

    async def _page_in_session(self, sessionmaker: async_sessionmaker[AsyncSession], *,
                               viewer_id: int | None, filters: EventFilter, after: str | None,
                               limit: int) -> tuple[list[EventLog], str | None]:
        async with sessionmaker() as session:
            return await self.page(session, viewer_id=viewer_id, filters=filters, after=after,
                                   limit=limit)

    async def export(self, sessionmaker: async_sessionmaker[AsyncSession], *,
                     viewer_id: int | None, filters: EventFilter) -> AsyncIterator[bytes]:
        """NDJSON, page by page, each page in its own short session: constant memory."""
        after: str | None = None
        batch = self._settings.WS_REPLAY_BATCH
        while True:
            # Shielded: a client that disconnects cancels the stream (see fetch_after).
            rows, after = await asyncio.shield(self._page_in_session(
                sessionmaker, viewer_id=viewer_id, filters=filters, after=after, limit=batch))
            if rows:
                yield "".join(json.dumps(row_to_dict(r)) + "\n" for r in rows).encode()
            if after is None:
                return

    # --- the tunnel --------------------------------------------------------------------------
    async def fetch_after(self, sessionmaker: async_sessionmaker[AsyncSession], user_id: int,
                          after: int, until: int | None, limit: int) -> list[Outgoing]:
        # Shielded: the tunnel's sender is cancelled when its socket goes away. A session
        # cancelled mid-query gets its connection invalidated, and on SQLite the abandoned
        # connection keeps its BEGIN IMMEDIATE lock: every later write then fails with
        # "database is locked". The read finishes; only its result is dropped.
        return await asyncio.shield(self._fetch_after(sessionmaker, user_id, after, until,
                                                      limit))

    async def _fetch_after(self, sessionmaker: async_sessionmaker[AsyncSession], user_id: int,
                           after: int, until: int | None, limit: int) -> list[Outgoing]:
        # Core rows, not ORM objects: every tunnel's resume reads here, and in queue mode
        # every hint that shows a gap does (app/core/bus/fanout.py); loading EventLog
        # instances cost more than the query.
        engine = sessionmaker.kw["bind"]
        if engine.dialect.name == "postgresql":
            return await self._fetch_after_pg(engine, user_id, after, until, limit)
        query = select(_EVENTS).where(_EVENTS.c.user_id == user_id, _EVENTS.c.user_seq > after)
        if until is not None:
            query = query.where(_EVENTS.c.user_seq <= until)
        async with sessionmaker() as session:
            rows = (await session.execute(
                query.order_by(_EVENTS.c.user_seq).limit(limit))).all()
        return [(row.user_seq, encode(event_from_row(row).to_message())) for row in rows]

    @staticmethod
    async def _fetch_after_pg(engine: AsyncEngine, user_id: int, after: int,
                              until: int | None, limit: int) -> list[Outgoing]:
        """One autocommit statement on the pooled asyncpg connection: a session's BEGIN,
        SELECT and ROLLBACK were three round trips and SQLAlchemy's work on each, for a read
        that queue mode makes for every hint of an event too large to carry, and for every
        gap (scripts/bench part 9)."""
        # The payload arrives decoded: SQLAlchemy's dialect sets the JSON codecs on every
        # connection of the engine, raw use included.
        async with pooled_driver(engine) as driver:
            rows = await driver.fetch(_FETCH_AFTER_PG, user_id, after,
                                      until if until is not None else _NO_UNTIL, limit,
                                      record_class=_Record)
        return [(row.user_seq, encode(event_from_row(row).to_message())) for row in rows]

    @staticmethod
    async def current_cursor(sessionmaker: async_sessionmaker[AsyncSession], user_id: int) -> int:
        async with sessionmaker() as session:
            value = (await session.execute(
                select(User.last_event_seq).where(User.id == user_id))).scalar_one_or_none()
        return int(value or 0)

    @staticmethod
    async def flow_exists_for(session: AsyncSession, flow_id: uuid.UUID, user_id: int) -> bool:
        found = await session.execute(select(Flow.id).where(Flow.id == flow_id,
                                                            Flow.user_id == user_id))
        return found.first() is not None


manager_class = EventLogManager
