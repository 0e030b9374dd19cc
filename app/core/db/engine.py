"""Engine and session factory. Built in the app lifespan, never at import time."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

from app.core.db import sqlite_inline
from app.core.json_codec import dumps, loads

_SQLITE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://")


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async drivers.

    SQLite runs on the event loop thread (app/core/db/sqlite_inline.py), `sqlite+aiosqlite`
    URLs too: that was the default before, and is still in settings files."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://"):]
    for scheme in _SQLITE_SCHEMES:
        if url.startswith(scheme):
            return f"sqlite+{sqlite_inline.DRIVER}://" + url[len(scheme):]
    return url


# How long a writer waits for SQLite's write lock: the in-process gate below, then SQLite's
# own busy handler (another process writing: a migration, a script).
SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Every new connection of the pool runs these (tests/test_sqlite_locking.py checks each).
    # WAL lets readers run beside the single writer, and with synchronous=NORMAL a commit
    # writes the WAL without an fsync (safe across a crash of the app; a power cut can lose
    # the last commits — README). busy_timeout makes a writer from another process wait
    # instead of failing with "database is locked"; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # On the event loop thread SQLite's busy wait blocks the loop: kept short there, and the
    # write gate waits for the write lock in the loop instead (_begin_immediate).
    busy_ms = (sqlite_inline.SQLITE_INLINE_BUSY_MS if sqlite_inline.is_inline(dbapi_connection)
               else int(SQLITE_BUSY_TIMEOUT_S * 1000))
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # No implicit BEGIN from the driver: _SQLiteWriteGate decides when a transaction begins.
    dbapi_connection.isolation_level = None


_READS = ("SELECT", "PRAGMA", "EXPLAIN")
_GATES: weakref.WeakKeyDictionary[Engine, _SQLiteWriteGate] = weakref.WeakKeyDictionary()


class _SQLiteWriteGate:
    """SQLite transactions as PostgreSQL's default (READ COMMITTED) runs them, with one writer
    at a time.

    * Until its first write a transaction takes no lock: each read runs on its own and sees
      the latest commits, as each statement does on PostgreSQL. A transaction that only
      reads (GET requests, the tunnel's log reads) never waits for a writer, nor makes one
      wait (WAL).
    * Its first write statement (anything but SELECT / PRAGMA / EXPLAIN; a SAVEPOINT too)
      first takes this gate — an asyncio lock, so a writer waits in the event loop and is
      woken the moment the last one is done — then `BEGIN IMMEDIATE`, SQLite's write lock.
      Its snapshot starts there, so it can never fail with SQLITE_BUSY_SNAPSHOT ("database is
      locked" at once, which a deferred transaction that read before another writer's commit
      gets on its first write).
    * The gate is held until the connection goes back to the pool (a session's commit or
      rollback returns it).

    Why a gate, not SQLite's lock alone: pooled connections that collide on the write lock
    wait in SQLite's busy handler, which sleeps 1, 2, 5, 10 … 100 ms between tries and
    wakes late; on the load benchmark (part 6) that was most of a run's latency.
    """

    _HOLDS = "cascade_sqlite_gate"  # connection info: the lock this connection holds
    _IN_TX = "cascade_sqlite_in_tx"  # connection info: BEGIN IMMEDIATE was sent

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def of(cls, engine: Engine) -> _SQLiteWriteGate | None:
        return _GATES.get(engine)

    def _lock(self) -> asyncio.Lock:
        # One lock per event loop: an asyncio lock belongs to the loop that first waits on it.
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def install(self, engine: AsyncEngine) -> None:
        sync_engine = engine.sync_engine
        _GATES[sync_engine] = self
        event.listen(sync_engine, "before_cursor_execute", self._before_execute)
        event.listen(sync_engine, "commit", self._transaction_ends)
        event.listen(sync_engine, "rollback", self._transaction_ends)
        event.listen(sync_engine.pool, "checkin", self._returned)
        event.listen(sync_engine.pool, "detach", self._returned)

    def _before_execute(self, conn: Connection, cursor: Any, statement: str,
                        _parameters: Any, _context: Any, _executemany: bool) -> None:
        info = conn.info
        if info.get(self._IN_TX) or statement.lstrip()[:7].upper().startswith(_READS):
            return
        if self._HOLDS not in info:
            lock = self._lock()
            await_(_acquire(lock, SQLITE_BUSY_TIMEOUT_S))
            info[self._HOLDS] = lock
        _begin_immediate(cursor)
        info[self._IN_TX] = True

    async def begin_write(self, info: dict[str, Any], driver: Any) -> None:
        """What the first write statement does (_before_execute), for a caller about to
        write on the bare sqlite3 connection under a pooled connection whose `info` is
        given (bulk.SQLiteBulk). The connection's commit or rollback, and its return to
        the pool, end it as they end any other write transaction."""
        if info.get(self._IN_TX):
            return
        if self._HOLDS not in info:
            lock = self._lock()
            await _acquire(lock, SQLITE_BUSY_TIMEOUT_S)
            info[self._HOLDS] = lock
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        for attempt in itertools.count():
            try:
                if _try_begin_immediate(driver, deadline):
                    break
            except sqlite3.Error as exc:  # as SQLAlchemy raises it for a statement it ran
                raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
            await asyncio.sleep(_busy_wait_s(attempt))
        info[self._IN_TX] = True

    def _transaction_ends(self, conn: Connection) -> None:
        # Before the COMMIT / ROLLBACK is sent: the next write on this connection (still
        # holding the gate until it is returned) begins a new transaction.
        conn.info.pop(self._IN_TX, None)

    def _returned(self, dbapi_connection: Any, record: Any) -> None:
        # The pool's reset-on-return is off for SQLite (create_engine): a ROLLBACK of a
        # connection that is in no transaction is one more statement, inside the gate for a
        # writer. Only a transaction still open needs it.
        if record.info.pop(self._IN_TX, None) and dbapi_connection is not None \
                and in_greenlet():
            try:
                dbapi_connection.rollback()
            finally:
                self._release(record)
        else:
            self._release(record)

    def _release(self, record: Any) -> None:
        lock = record.info.pop(self._HOLDS, None)
        if lock is not None:
            lock.release()


# Waits between tries of BEGIN IMMEDIATE while another process holds SQLite's write lock.
_BUSY_RETRY_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


def _begin_immediate(cursor: Any) -> None:
    """BEGIN IMMEDIATE on the statement's own cursor (one more statement, no new cursor).

    Another process holding the write lock (a migration, a script) makes it fail with
    SQLITE_BUSY once the connection's short busy_timeout is over; it is retried after an
    asyncio sleep, so the event loop runs meanwhile, until SQLITE_BUSY_TIMEOUT_S."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    for attempt in itertools.count():
        if _try_begin_immediate(cursor, deadline):
            return
        await_(asyncio.sleep(_busy_wait_s(attempt)))


def _try_begin_immediate(cursor: Any, deadline: float) -> bool:
    """True once begun; False when another process holds the lock and there is time left."""
    try:
        cursor.execute("BEGIN IMMEDIATE")
        return True
    except sqlite3.OperationalError as exc:
        if not _is_busy(exc) or time.monotonic() >= deadline:
            raise
        return False


def _busy_wait_s(attempt: int) -> float:
    return _BUSY_RETRY_S[min(attempt, len(_BUSY_RETRY_S) - 1)]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY \
        or "database is locked" in str(exc)


async def _acquire(lock: asyncio.Lock, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await lock.acquire()
    except TimeoutError:
        # The pool's own error for "no connection in time", so callers answer both alike.
        raise PoolTimeoutError(
            f"no SQLite write lock within {timeout_s:g} s: another transaction of this "
            "process holds it") from None


def create_engine(url: str, *, pool_size: int = 10, pool_timeout: float = 30.0,
                  server_settings: dict[str, str] | None = None) -> AsyncEngine:
    """`server_settings`: PostgreSQL session settings for every connection (workers set
    `idle_in_transaction_session_timeout`, DESIGN.md §10)."""
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
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        # _SQLiteWriteGate rolls back the one kind of connection that needs it.
        kwargs["pool_reset_on_return"] = None
        if not in_memory:
            # A pool of DB_POOL_SIZE as on PostgreSQL (see there). SQLAlchemy's default
            # (5 + 10 overflow) closed an overflow connection after each use under the load
            # benchmark's 32 requests in flight, and opening one (file, PRAGMAs) was 3% of
            # the server's CPU.
            kwargs.update(pool_size=pool_size, max_overflow=0)
    else:
        # No pre-ping: it costs a round trip per checkout, which is per commit on the event
        # log's hot path. Connections are recycled instead, and a dead one fails one
        # transaction, which its caller retries or reports.
        # No overflow: the pool opens connections as they are needed, up to `pool_size`, and
        # keeps them. Overflow connections are closed at their first return to a full pool:
        # under the queue benchmark an API replica (32 requests in flight) opened 17 new
        # backends a second that way, each a fork, an authentication, asyncpg's type
        # introspection and cold caches in PostgreSQL.
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_recycle=1800)
        if server_settings:
            kwargs["connect_args"] = {"server_settings": dict(server_settings)}
    # JSON columns go through the app's one codec (app/core/json_codec.py), like COPY rows.
    engine = create_async_engine(url, json_serializer=dumps, json_deserializer=loads, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        _SQLiteWriteGate().install(engine)
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
