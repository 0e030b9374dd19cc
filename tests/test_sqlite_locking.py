"""SQLite takes its write lock only for transactions that write (app/core/db/engine.py).

Reads never wait for a writer; writers wait their turn in the event loop (one at a time) and
never fail with "database is locked" / SQLITE_BUSY_SNAPSHOT, however their reads and other
writers' commits interleave. Real SQLite files, real pooled connections.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import Update, insert, select, text, update
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.db import engine as engine_module
from app.core.db import sqlite_inline
from app.models import User
from tests.conftest import LiveServer
from tests.helpers import sign_up_and_login

# Within this bound a blocked call is a hang, not a slow machine: SQLite's own busy wait is
# 30 s, and nothing here does more than a few statements.
HANG_S = 20.0


def _engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    bound: AsyncEngine = sessionmaker.kw["bind"]
    return bound


async def _user(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    tag = uuid.uuid4().hex[:8]
    async with sessionmaker() as session, session.begin():
        user_id = (await session.execute(insert(User).values(
            email=f"{tag}@example.com", username=f"u{tag}", password_hash="x")
            .returning(User.id))).scalar_one()
    return int(user_id)


async def _counter(sessionmaker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(
            select(User.last_event_seq).where(User.id == user_id))).scalar_one())


def _bump(user_id: int) -> Update:
    return (update(User).where(User.id == user_id)
            .values(last_event_seq=User.last_event_seq + 1))


async def test_every_pooled_connection_gets_the_pragmas(
        store: async_sessionmaker[AsyncSession]) -> None:
    engine = _engine(store)
    connections = [await engine.connect() for _ in range(5)]  # five distinct pool entries
    try:
        for conn in connections:
            values = [(await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
                      for name in ("journal_mode", "synchronous", "busy_timeout",
                                   "foreign_keys")]
            # synchronous 1 = NORMAL; a short busy wait: it would block the event loop
            # (the write gate waits for another process's write lock in the loop).
            assert values == ["wal", 1, sqlite_inline.SQLITE_INLINE_BUSY_MS, 1]
    finally:
        for conn in connections:
            await conn.close()


async def test_a_read_does_not_wait_for_an_open_write_transaction(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)
    async with store() as writer:
        await writer.execute(_bump(user_id))  # holds the write lock, not committed
        # Another transaction reads at once, and sees only what is committed.
        assert await asyncio.wait_for(_counter(store, user_id), HANG_S) == 0
        await writer.commit()
    assert await _counter(store, user_id) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_get_events_answers_while_a_write_transaction_is_held_open(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    sessionmaker = live_server.app.state.sessionmaker
    async with sessionmaker() as writer:
        await writer.execute(_bump(account.id))
        r = await asyncio.wait_for(live_client.get(
            "/api/v1/events", headers={"Authorization": f"Bearer {account.access_token}"}),
            HANG_S)
        assert r.status_code == 200, r.text
        await writer.rollback()


async def test_a_transaction_that_read_before_another_commit_still_writes(
        store: async_sessionmaker[AsyncSession]) -> None:
    # A deferred SQLite transaction that read, then sees another writer commit, fails its
    # first write with SQLITE_BUSY_SNAPSHOT; here the write lock is taken at that write.
    user_id = await _user(store)
    async with store() as first:
        assert (await first.execute(select(User.last_event_seq).where(
            User.id == user_id))).scalar_one() == 0
        async with store() as second, second.begin():
            await second.execute(_bump(user_id))
        await first.execute(_bump(user_id))
        await first.commit()
    assert await _counter(store, user_id) == 2


async def test_concurrent_writers_all_succeed(store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)

    async def read_then_write() -> None:
        async with store() as session:
            await session.execute(select(User.id).where(User.id == user_id))
            await asyncio.sleep(0)  # let the others read and write in between
            await session.execute(_bump(user_id))
            await asyncio.sleep(0)
            await session.commit()

    await asyncio.wait_for(asyncio.gather(*(read_then_write() for _ in range(50))), HANG_S)
    assert await _counter(store, user_id) == 50


async def test_a_writer_cancelled_mid_transaction_lets_the_next_one_in(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)
    holding = asyncio.Event()

    async def stuck_writer() -> None:
        async with store() as session:
            await session.execute(_bump(user_id))
            holding.set()
            await asyncio.Event().wait()  # never commits

    task = asyncio.create_task(stuck_writer())
    await asyncio.wait_for(holding.wait(), HANG_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def write() -> None:
        async with store() as session, session.begin():
            await session.execute(_bump(user_id))

    await asyncio.wait_for(write(), HANG_S)
    assert await _counter(store, user_id) == 1  # the cancelled write was rolled back


async def test_a_rolled_back_writer_releases_the_lock(
        store: async_sessionmaker[AsyncSession]) -> None:
    user_id = await _user(store)
    with pytest.raises(RuntimeError):
        async with store() as session, session.begin():
            await session.execute(_bump(user_id))
            raise RuntimeError("the request failed")
    async with store() as session, session.begin():
        await asyncio.wait_for(session.execute(_bump(user_id)), HANG_S)
    assert await _counter(store, user_id) == 1


async def test_a_writer_that_cannot_get_the_lock_in_time_gets_the_pools_timeout(
        store: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    user_id = await _user(store)
    async with store() as holder:
        await holder.execute(_bump(user_id))
        async with store() as waiter:
            with pytest.raises(PoolTimeoutError, match="SQLite write lock"):
                await waiter.execute(_bump(user_id))
        await holder.commit()
    assert await _counter(store, user_id) == 1
