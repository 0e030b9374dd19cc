"""SQLite for the async engine with no driver thread: `sqlite+cascade://`.

aiosqlite runs each call on a thread of its own, handed over through a queue and answered
through a future and `call_soon_threadsafe`; SQLAlchemy's adapter makes three or four such
calls per statement (cursor, execute, fetch, close). On the load benchmark (part 6) those
round trips were the server's largest cost: a quarter of the event loop's CPU sat in the
hand-over alone, and the waits around it held the single writer's lock for longer.

This dialect is SQLAlchemy's own sqlite3 (pysqlite) dialect marked async: the async engine
runs it inside its greenlet like any other, and since the driver never suspends, each
statement runs straight through on the event loop thread. An SQLite statement of this app
takes microseconds (a commit in WAL mode with synchronous=NORMAL writes the WAL without an
fsync), less than one thread round trip.

What could block the loop for long is SQLite's busy handler: a writer from another process
(a migration, a script) holding the write lock. So these connections get a short
`busy_timeout` (SQLITE_INLINE_BUSY_MS), and the write gate (engine.py) retries
`BEGIN IMMEDIATE` with async sleeps, so waiting for another process costs the loop nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

DRIVER = "cascade"

# SQLite's own busy wait on these connections, which blocks the event loop: a bound on the
# stall when another process holds a lock. The write gate's BEGIN IMMEDIATE, the one
# statement that waits for another writer, retries in the loop instead.
SQLITE_INLINE_BUSY_MS = 20


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    """The sqlite3 dialect, run inside the async engine's greenlet."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # As aiosqlite's dialect: a queue of connections for a file, one shared connection
        # for :memory:.
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # Connections are checked out and used on the loop thread, but the pool may close
        # one from wherever it is garbage collected.
        kwargs["check_same_thread"] = False
        kwargs["factory"] = InlineConnection
        return args, kwargs

    # AsyncConnection.execute (not the session's) refuses a driver that never suspended
    # ("AwaitRequired"); one pass through the greenlet's parent per statement satisfies it
    # without a turn of the event loop (two greenlet switches, about a microsecond).
    def do_execute(self, cursor: Any, statement: str, parameters: Any,
                   context: Any = None) -> None:
        _switched()
        cursor.execute(statement, parameters)

    def do_executemany(self, cursor: Any, statement: str, parameters: Any,
                       context: Any = None) -> None:
        _switched()
        cursor.executemany(statement, parameters)

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        _switched()
        cursor.execute(statement)


class InlineCursor(sqlite3.Cursor):
    """sqlite3's cursor with the one hook the async result asks of a driver's cursor."""

    async def _async_soft_close(self) -> None:
        # The rows stay readable on the cursor: nothing to close before the result is read.
        return None


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = InlineCursor) -> Any:
        return super().cursor(factory)


class _Ready:
    """An awaitable that is done at once: awaiting it never suspends the task."""

    def __await__(self) -> Any:
        return iter(())


_READY = _Ready()


def _switched() -> None:
    if in_greenlet():
        await_(_READY)


registry.register(f"sqlite.{DRIVER}", __name__, "InlineSQLiteDialect")


def is_inline(dbapi_connection: Any) -> bool:
    """Whether a pooled DBAPI connection is a connection of this dialect."""
    return isinstance(dbapi_connection, InlineConnection)
