"""Engine and session factory. Built in the app lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.json_codec import dumps, loads


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes a second writer wait
    # instead of failing with "database is locked"; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Take transactions into our own hands (see _sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front. A deferred transaction that reads and
    # then writes fails at once with "database is locked" when another writer committed in
    # between (the WAL snapshot is stale); an immediate one waits its turn (busy_timeout).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 30.0) -> AsyncEngine:
    url = normalize_url(url)
    parsed = make_url(url)
    # Past `pool_timeout` without a free connection, checkout raises sqlalchemy's
    # TimeoutError, which the API answers 503 `busy` (core/errors.py).
    kwargs: dict[str, Any] = {}
    in_memory = parsed.database in (None, "", ":memory:")
    if not (parsed.get_backend_name() == "sqlite" and in_memory):  # StaticPool: no timeout
        kwargs["pool_timeout"] = pool_timeout
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # No pre-ping: it costs a round trip per checkout, which is per commit on the event
        # log's hot path. Connections are recycled instead, and a dead one fails one
        # transaction, which its caller retries or reports.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    # JSON columns go through the app's one codec (app/core/json_codec.py), like COPY rows.
    engine = create_async_engine(url, json_serializer=dumps, json_deserializer=loads, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on error."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
