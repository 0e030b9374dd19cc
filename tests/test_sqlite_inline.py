"""The app's SQLite driver (app/core/db/sqlite_inline.py): sqlite3 on the event loop thread,
and the log writer's bulk statements straight on it (bulk.SQLiteBulk). Real SQLite files.

A plain sqlite3 connection opened here stands for another process (a migration, a script):
it shares nothing with the engine's pool or its write gate, only the file's locks."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from typing import cast

import pytest
from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import engine as engine_module
from app.core.db import normalize_url, sqlite_inline
from app.core.db.base import utcnow
from app.core.db.bulk import SQLiteBulk, bulk_for, bulk_transaction
from app.core.errors import is_busy
from app.models import EventLog, User

HANG_S = 20.0
USERS = cast(Table, User.__table__)
EVENTS = cast(Table, EventLog.__table__)


def _path(url: str) -> str:
    database = make_url(url).database
    assert database
    return database


async def _user(store: async_sessionmaker[AsyncSession]) -> int:
    tag = uuid.uuid4().hex[:8]
    async with store() as session, session.begin():
        return int((await session.execute(insert(User).values(
            email=f"{tag}@example.com", username=f"u{tag}", password_hash="x")
            .returning(User.id))).scalar_one())


async def _seq(store: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with store() as session:
        return int((await session.execute(
            select(User.last_event_seq).where(User.id == user_id))).scalar_one())


def test_sqlite_urls_get_the_inline_driver() -> None:
    for url in ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"):
        assert normalize_url(url) == "sqlite+cascade:///./data/x.db"
    assert normalize_url("sqlite:///:memory:") == "sqlite+cascade:///:memory:"
    assert normalize_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"


async def test_statements_run_on_the_event_loop_thread(
        store: async_sessionmaker[AsyncSession]) -> None:
    engine = store.kw["bind"]
    threads: list[int] = []
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert sqlite_inline.is_inline(raw.driver_connection)
        def where_am_i() -> int:
            threads.append(threading.get_ident())
            return 1

        raw.driver_connection.create_function("where_am_i", 0, where_am_i)
        assert (await conn.execute(text("SELECT where_am_i()"))).scalar_one() == 1
    assert threads == [threading.get_ident()]


async def test_a_writer_waits_for_another_process_in_the_event_loop(
        store: async_sessionmaker[AsyncSession], sqlite_url: str) -> None:
    user_id = await _user(store)
    other = sqlite3.connect(_path(sqlite_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

        async def write() -> None:
            async with store() as session, session.begin():
                await session.execute(update(User).where(User.id == user_id)
                                      .values(last_event_seq=User.last_event_seq + 1))

        writer = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):  # the loop keeps turning while the writer waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not writer.done() and ticks == 20
        other.execute("COMMIT")
        await asyncio.wait_for(writer, HANG_S)
    finally:
        other.close()
    assert await _seq(store, user_id) == 1


async def test_a_writer_locked_out_by_another_process_gets_a_busy_error(
        store: async_sessionmaker[AsyncSession], sqlite_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    user_id = await _user(store)
    other = sqlite3.connect(_path(sqlite_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError) as caught:
            async with store() as session, session.begin():
                await session.execute(update(User).where(User.id == user_id)
                                      .values(last_event_seq=1))
        assert is_busy(caught.value)  # answered 503 `busy`, as before
        with pytest.raises(OperationalError, match="database is locked"):
            async with bulk_transaction(store) as bulk:
                await bulk.add_to_counters(USERS, "last_event_seq", {user_id: 1})
        other.execute("ROLLBACK")
    finally:
        other.close()
    async with bulk_transaction(store) as bulk:  # the gate was released both times
        assert await bulk.add_to_counters(USERS, "last_event_seq", {user_id: 2}) == {
            user_id: 2}


async def test_bulk_transactions_and_sessions_take_turns_on_the_write_lock(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)

    async def by_bulk() -> None:
        async with bulk_transaction(store) as bulk:
            assert isinstance(bulk, SQLiteBulk)
            await asyncio.sleep(0)  # hold the lock across a turn of the loop
            await bulk.add_to_counters(USERS, "last_event_seq", {user_id: 1})

    async def by_session() -> None:
        async with store() as session:
            await session.execute(select(User.id))
            await asyncio.sleep(0)
            await session.execute(update(User).where(User.id == user_id)
                                  .values(last_event_seq=User.last_event_seq + 1))
            await asyncio.sleep(0)
            await session.commit()

    await asyncio.wait_for(asyncio.gather(*(f() for _ in range(20)
                                            for f in (by_bulk, by_session))), HANG_S)
    assert await _seq(store, user_id) == 40


async def test_a_failed_bulk_transaction_rolls_back_and_raises_sqlalchemys_error(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)
    row = {"id": uuid.uuid4(), "event_name": "x", "payload": {"a": 1}, "user_id": user_id,
           "user_seq": 1, "created_at": utcnow()}
    with pytest.raises(IntegrityError):
        async with bulk_transaction(store) as bulk:
            await bulk.add_to_counters(USERS, "last_event_seq", {user_id: 1})
            await bulk.insert_many(EVENTS, [row, {**row, "id": uuid.uuid4()}])  # same seq
    assert await _seq(store, user_id) == 0  # the counter rolled back with it
    with pytest.raises(IntegrityError):  # foreign keys are on
        async with bulk_transaction(store) as bulk:
            await bulk.insert_many(EVENTS, [{**row, "user_id": user_id + 1000}])
    async with bulk_transaction(store) as bulk:
        await bulk.insert_many(EVENTS, [row])
    async with store() as session:
        stored = (await session.execute(select(EventLog))).scalars().one()
    assert (stored.id, stored.payload, stored.created_at) == (
        row["id"], {"a": 1}, row["created_at"])


async def test_bulk_statements_in_a_request_session_join_its_transaction(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)
    async with store() as session:
        await session.execute(select(User.id))
        bulk = await bulk_for(session)
        assert isinstance(bulk, SQLiteBulk)
        await bulk.add_to_counters(USERS, "last_event_seq", {user_id: 3})
        await session.execute(update(User).where(User.id == user_id)
                              .values(last_event_seq=User.last_event_seq + 1))
        assert await asyncio.wait_for(_seq(store, user_id), HANG_S) == 0  # not committed
        await session.rollback()
    assert await _seq(store, user_id) == 0
    async with store() as session:
        await (await bulk_for(session)).add_to_counters(USERS, "last_event_seq", {user_id: 3})
        await session.commit()
    assert await _seq(store, user_id) == 3



