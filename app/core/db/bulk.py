"""Writing many rows at once: COPY and JSON recordsets on PostgreSQL, executemany elsewhere.

The event log writer inserts hundreds of rows per transaction. Through SQLAlchemy's
executemany every row pays for bind processing and asyncpg sends one Bind/Execute per row;
`COPY … FROM STDIN (FORMAT binary)` sends the batch as one stream that asyncpg encodes in C,
which made the event log ~30% faster. COPY skips SQLAlchemy's column handling, so this module
does the two parts of it the tables here need: Python-side scalar defaults for missing keys
and JSON encoding (the same encoder the engine uses, app/core/json_codec.py).

Three implementations of one small interface (`Bulk`): `PostgresBulk` talks to an asyncpg
connection inside a transaction its caller holds — a transaction of its own
(`bulk_transaction`, the log writer's) or a request's session's (`bulk_for`); `SQLiteBulk`
does the same on the sqlite3 connection of the app's SQLite driver (sqlite_inline.py);
`SessionBulk` runs SQLAlchemy statements in a session (any other driver).
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import JSON, Column, Table, bindparam, case, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.core.db import sqlite_inline
from app.core.db.engine import _SQLiteWriteGate
from app.core.json_codec import dumps

Row = Mapping[str, Any]
_PG = postgresql.dialect()


class Bulk(Protocol):
    """Statements of many rows, in a transaction the caller holds."""

    async def insert_many(self, table: Table, rows: Sequence[Row]) -> None:
        """Insert `rows` (dicts of column name → value). A missing key takes the column's
        scalar default; None is SQL NULL."""

    async def update_many(self, table: Table, keys: Sequence[str],
                          rows: Sequence[Row]) -> None:
        """Update rows found by their `keys` columns; each row sets its other items."""

    async def add_to_counters(self, table: Table, column: str,
                              counts: Mapping[Any, int]) -> dict[Any, int]:
        """Add `counts[id]` to `column` of each row by id; returns id → the new value.
        Rows are locked in id order, so concurrent writers never deadlock; the locks hold
        until the transaction ends. A missing row is missing from the result."""

    async def column_values(self, table: Table, column: str,
                            ids: Sequence[Any]) -> dict[Any, Any]:
        """id → `column` of the rows with those ids (a missing row is missing)."""


async def bulk_for(session: AsyncSession) -> Bulk:
    """Bulk statements in `session`'s transaction. The caller's pending ORM changes are
    flushed first: these are Core statements, which do not autoflush."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        return PostgresBulk(await driver_connection(session))
    if dialect.driver == sqlite_inline.DRIVER:
        return await _sqlite_bulk(await session.connection())
    return SessionBulk(session)


@asynccontextmanager
async def bulk_transaction(
        sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Bulk]:
    """Bulk statements in a transaction of their own, committed when the block ends. On
    PostgreSQL it runs on the bare asyncpg connection: no ORM session and no greenlet hop per
    statement (the log writer's 20-event batch went from 2.5 to 1 ms of CPU)."""
    engine = sessionmaker.kw["bind"]
    if engine.dialect.driver == sqlite_inline.DRIVER:
        # The batch's statements straight on sqlite3, with none of SQLAlchemy's per-statement
        # work (compile cache, execution context, result) or an ORM session around them.
        async with engine.connect() as connection, connection.begin():
            yield await _sqlite_bulk(connection)
        return
    if engine.dialect.name != "postgresql":
        async with sessionmaker() as session, session.begin():
            yield SessionBulk(session)
        return
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        try:
            async with driver.transaction():
                yield PostgresBulk(driver)
        except BaseException:
            if driver.is_closed():
                # SQLAlchemy never saw the failure, so it would hand the dead connection
                # out again: drop it from the pool.
                await connection.invalidate()
            raise


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled connection's driver connection (asyncpg's), outside any transaction: each
    statement autocommits, one round trip, no BEGIN or ROLLBACK around it."""
    async with engine.connect() as connection:
        yield (await connection.get_raw_connection()).driver_connection


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's connection, inside its transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement it runs itself;
    a statement sent straight to the driver before that would run outside the transaction
    (autocommit) and survive a rollback. So the transaction is begun here when it has not."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        await connection.exec_driver_sql("SELECT 1")
    return driver


# --- PostgreSQL: an asyncpg connection --------------------------------------------------------
class PostgresBulk:
    """COPY for inserts, `UPDATE … FROM json_to_recordset(…)` for updates, statements
    asyncpg keeps prepared; the SQL for each table and column set is built once."""

    def __init__(self, driver: Any) -> None:
        if not driver.is_in_transaction():
            raise RuntimeError("PostgresBulk needs a connection inside a transaction")
        self.driver = driver

    async def insert_many(self, table: Table, rows: Sequence[Row]) -> None:
        if rows:
            plan = _copy_plan(table)
            await self.driver.copy_records_to_table(table.name, records=plan.records(rows),
                                                    columns=plan.columns)

    async def update_many(self, table: Table, keys: Sequence[str],
                          rows: Sequence[Row]) -> None:
        # The rows that set the same columns go as one statement (one index lookup per row
        # instead of one statement per row), their values as one JSON document: asyncpg
        # encodes an array parameter element by element, with two ABC isinstance checks per
        # element, which made the eleven arrays of a batch's node updates a quarter of the
        # log writer's CPU (1,000 node updates: 11.7 -> 5.5 ms of Python, 26 -> 24 ms wall).
        for columns, same in _by_columns(keys, rows).items():
            await self.driver.execute(_update_sql(table, tuple(keys), columns), dumps(same))

    async def add_to_counters(self, table: Table, column: str,
                              counts: Mapping[Any, int]) -> dict[Any, int]:
        ids = sorted(counts)
        if len(ids) == 1:  # one row: its UPDATE is its lock
            rows = await self.driver.fetch(_add_one_sql(table, column), ids[0], counts[ids[0]])
        else:
            # UPDATE … FROM takes its row locks in no set order: lock them in order first.
            await self.driver.execute(_lock_sql(table), ids)
            rows = await self.driver.fetch(_add_many_sql(table, column), ids,
                                           [counts[i] for i in ids])
        return {row[0]: row[1] for row in rows}

    async def column_values(self, table: Table, column: str,
                            ids: Sequence[Any]) -> dict[Any, Any]:
        rows = await self.driver.fetch(
            f'SELECT id, "{column}" FROM "{table.name}" WHERE id = ANY($1)', list(ids))
        return {row[0]: row[1] for row in rows}


def _pg_type(table: Table, name: str) -> str:
    return str(table.c[name].type.compile(dialect=_PG))


@functools.cache  # a handful per table: one per key set and set of columns
def _update_sql(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """UPDATE from `$1`, a JSON array of objects holding the keys and the columns."""
    record = ", ".join(f'"{name}" {_pg_type(table, name)}' for name in (*keys, *columns))
    return (f'UPDATE "{table.name}" AS t SET '
            + ", ".join(f'"{c}" = v."{c}"' for c in columns)
            + f" FROM json_to_recordset($1::json) AS v({record}) WHERE "
            + " AND ".join(f't."{k}" = v."{k}"' for k in keys))


@functools.cache
def _add_one_sql(table: Table, column: str) -> str:
    return (f'UPDATE "{table.name}" SET "{column}" = "{column}" + $2 WHERE id = $1 '
            f'RETURNING id, "{column}"')


@functools.cache
def _lock_sql(table: Table) -> str:
    # FOR NO KEY UPDATE, the lock the UPDATE itself takes: FOR UPDATE also conflicts with the
    # KEY SHARE lock every foreign-key check takes, so a request inserting a run for the user
    # (runs.user_id) and the event writer numbering that user's events waited on each other.
    return (f'SELECT id FROM "{table.name}" WHERE id = ANY($1::{_pg_type(table, "id")}[]) '
            "ORDER BY id FOR NO KEY UPDATE")


@functools.cache
def _add_many_sql(table: Table, column: str) -> str:
    return (f'UPDATE "{table.name}" AS t SET "{column}" = t."{column}" + v.n '
            f'FROM unnest($1::{_pg_type(table, "id")}[], $2::bigint[]) AS v(id, n) '
            f'WHERE t.id = v.id RETURNING t.id, t."{column}"')


class _CopyPlan:
    """How one table's rows become COPY records."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = [c.name for c in table.columns]
        self.defaults = {c.name: _scalar_default(c) for c in table.columns}
        self.required = frozenset(name for name, default in self.defaults.items()
                                  if default is _REQUIRED)
        self.json_positions = [i for i, c in enumerate(table.columns)
                               if isinstance(c.type, JSON)]
        # Picks a row's values in column order in one C call (a comprehension of lookups
        # cost twice as much per row).
        self.values_of: Callable[[Row], tuple[Any, ...]] = (
            operator.itemgetter(*self.columns) if len(self.columns) > 1
            else _one_value(self.columns[0]))

    def records(self, rows: Sequence[Row]) -> list[list[Any]]:
        complete, defaults, required = len(self.columns), self.defaults, self.required
        values_of, json_positions = self.values_of, self.json_positions
        out = []
        for row in rows:
            if len(row) == complete:  # every column given (the event log's rows)
                record = list(values_of(row))
            else:
                if not required <= row.keys():
                    missing = min(required - row.keys())
                    raise ValueError(f"{self.table.name}.{missing} has no scalar default; "
                                     "give it in every row")
                record = list(values_of({**defaults, **row}))
            for i in json_positions:
                if record[i] is not None:
                    record[i] = dumps(record[i])
            out.append(record)
        return out


def _one_value(name: str) -> Callable[[Row], tuple[Any, ...]]:
    """itemgetter of a single key returns the bare value, not a 1-tuple."""
    return lambda row: (row[name],)


_REQUIRED = object()  # a column whose default is computed (uuid4, utcnow): rows must give it


def _scalar_default(column: Column[Any]) -> Any:
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_scalar", False):
        return default.arg  # type: ignore[attr-defined]
    return _REQUIRED


_copy_plan = functools.cache(_CopyPlan)  # one per table


def _by_columns(keys: Sequence[str], rows: Sequence[Row]) -> dict[tuple[str, ...], list[Row]]:
    """Rows grouped by the set of columns they set (keys aside); rows that set none dropped.
    Rows made by the same code share their keys' order, so they are grouped by that first
    (a tuple of the keys is cheap; sorting them per row was not)."""
    by_order: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        by_order.setdefault(tuple(row), []).append(row)
    groups: dict[tuple[str, ...], list[Row]] = {}
    for order, same in by_order.items():
        columns = tuple(sorted(k for k in order if k not in keys))
        if columns:
            groups.setdefault(columns, []).extend(same)
    return groups


# --- SQLite: the sqlite3 connection ----------------------------------------------------------
async def _sqlite_bulk(connection: AsyncConnection) -> SQLiteBulk:
    """SQLiteBulk on `connection`, which holds SQLite's write lock from here on (as after
    its first write statement: the write gate, engine.py)."""
    gate = _SQLiteWriteGate.of(connection.sync_engine)
    if gate is None:
        raise RuntimeError("SQLiteBulk needs an engine made by app.core.db.create_engine")
    raw = await connection.get_raw_connection()
    await gate.begin_write(raw.info, raw.driver_connection)
    return SQLiteBulk(raw.driver_connection, connection.dialect)


class SQLiteBulk:
    """executemany on the sqlite3 connection, in a write transaction its caller holds; the
    SQL and each column's conversion (SQLAlchemy's bind processors, so values are stored as
    SessionBulk stored them) are worked out once per table and column set. Missing keys
    take the column's scalar default, as PostgresBulk's COPY does. On the load benchmark
    (part 6) the log writer's SQLAlchemy statements were a fifth of the server's CPU."""

    def __init__(self, driver: Any, dialect: Dialect) -> None:
        self.driver = driver
        self.dialect = dialect

    def _run(self, sql: str, params: Any, *, many: bool = False) -> Any:
        try:
            if many:
                return self.driver.executemany(sql, params)
            return self.driver.execute(sql, params)
        except sqlite3.Error as exc:
            # The errors SQLAlchemy would have raised (IntegrityError, OperationalError …).
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    async def insert_many(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        plan = _sqlite_plan(table, self.dialect)
        self._run(plan.insert_sql, plan.records(rows), many=True)

    async def update_many(self, table: Table, keys: Sequence[str],
                          rows: Sequence[Row]) -> None:
        convert = _sqlite_plan(table, self.dialect).convert
        for columns, same in _by_columns(keys, rows).items():
            names = (*columns, *keys)
            procs = [convert[name] for name in names]
            params = [[v if p is None or v is None else p(v)
                       for p, v in zip(procs, (row[n] for n in names), strict=True)]
                      for row in same]
            self._run(_sqlite_update_sql(table, tuple(keys), columns), params, many=True)

    async def add_to_counters(self, table: Table, column: str,
                              counts: Mapping[Any, int]) -> dict[Any, int]:
        ids = sorted(counts)
        to_db = _sqlite_plan(table, self.dialect).convert["id"] or _same
        stored = {to_db(i): i for i in ids}
        if len(ids) == 1:
            params: list[Any] = [counts[ids[0]], to_db(ids[0])]
        else:  # one statement whatever the number of rows
            params = [x for i in ids for x in (to_db(i), counts[i])]
            params += list(stored)
        rows = self._run(_sqlite_add_sql(table, column, len(ids)), params).fetchall()
        return {stored[row[0]]: row[1] for row in rows}

    async def column_values(self, table: Table, column: str,
                            ids: Sequence[Any]) -> dict[Any, Any]:
        to_db = _sqlite_plan(table, self.dialect).convert["id"] or _same
        stored = {to_db(i): i for i in ids}
        placeholders = ", ".join("?" * len(stored))
        rows = self._run(f'SELECT id, "{column}" FROM "{table.name}" WHERE id IN '
                         f"({placeholders})", list(stored)).fetchall()
        return {stored[row[0]]: row[1] for row in rows}


def _same(value: Any) -> Any:
    return value


class _SQLitePlan:
    """How one table's rows become sqlite3 parameters: column order, defaults, and the
    conversion of each column's values (None where the value goes as it is)."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.copy = _copy_plan(table)
        columns = list(table.columns)
        self.convert: dict[str, Callable[[Any], Any] | None] = {
            c.name: c.type._cached_bind_processor(dialect) for c in columns}
        self.procs = [(i, p) for i, c in enumerate(columns)
                      if (p := self.convert[c.name]) is not None]
        self.insert_sql = (f'INSERT INTO "{table.name}" ('
                           + ", ".join(f'"{c.name}"' for c in columns)
                           + ") VALUES (" + ", ".join("?" * len(columns)) + ")")

    def records(self, rows: Sequence[Row]) -> list[list[Any]]:
        plan = self.copy
        complete, defaults, required = len(plan.columns), plan.defaults, plan.required
        values_of, procs = plan.values_of, self.procs
        out = []
        for row in rows:
            if len(row) == complete:
                record = list(values_of(row))
            else:
                if not required <= row.keys():
                    missing = min(required - row.keys())
                    raise ValueError(f"{plan.table.name}.{missing} has no scalar default; "
                                     "give it in every row")
                record = list(values_of({**defaults, **row}))
            for i, proc in procs:
                if record[i] is not None:
                    record[i] = proc(record[i])
            out.append(record)
        return out


_sqlite_plan = functools.cache(_SQLitePlan)  # one per table (and the one dialect)


@functools.cache
def _sqlite_update_sql(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> str:
    return (f'UPDATE "{table.name}" SET ' + ", ".join(f'"{c}" = ?' for c in columns)
            + " WHERE " + " AND ".join(f'"{k}" = ?' for k in keys))


@functools.lru_cache(maxsize=512)  # one per number of rows a batch bumps
def _sqlite_add_sql(table: Table, column: str, count: int) -> str:
    if count == 1:
        return (f'UPDATE "{table.name}" SET "{column}" = "{column}" + ? WHERE id = ? '
                f'RETURNING id, "{column}"')
    whens = " ".join("WHEN ? THEN ?" for _ in range(count))
    marks = ", ".join("?" * count)
    return (f'UPDATE "{table.name}" SET "{column}" = "{column}" + CASE id {whens} END '
            f'WHERE id IN ({marks}) RETURNING id, "{column}"')


# --- anything else: SQLAlchemy statements in a session ----------------------------------------
class SessionBulk:
    """executemany through the session (SQLite, which locks the whole database on write)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_many(self, table: Table, rows: Sequence[Row]) -> None:
        # executemany needs one key set per statement.
        by_keys: dict[tuple[str, ...], list[Row]] = {}
        for row in rows:
            by_keys.setdefault(tuple(row), []).append(row)
        for same_keys in by_keys.values():
            await self.session.execute(insert(table), list(same_keys))

    async def update_many(self, table: Table, keys: Sequence[str],
                          rows: Sequence[Row]) -> None:
        for columns, same in _by_columns(keys, rows).items():
            stmt = (update(table)
                    .where(*(table.c[k] == bindparam(f"_key_{k}") for k in keys))
                    .values({c: bindparam(c) for c in columns}))
            await self.session.execute(stmt, [
                {**{f"_key_{k}": row[k] for k in keys}, **{c: row[c] for c in columns}}
                for row in same])

    async def add_to_counters(self, table: Table, column: str,
                              counts: Mapping[Any, int]) -> dict[Any, int]:
        ids = sorted(counts)
        counter = table.c[column]
        if len(ids) == 1:
            stmt, params = _add_one(table, column), {"key": ids[0], "n": counts[ids[0]]}
            rows = (await self.session.execute(stmt, params)).all()
        else:  # one statement whatever the number of rows
            increment = case({i: counts[i] for i in ids}, value=table.c.id)
            rows = (await self.session.execute(
                update(table).where(table.c.id.in_(ids)).values({column: counter + increment})
                .returning(table.c.id, counter))).all()
        return {row[0]: row[1] for row in rows}

    async def column_values(self, table: Table, column: str,
                            ids: Sequence[Any]) -> dict[Any, Any]:
        rows = (await self.session.execute(
            select(table.c.id, table.c[column]).where(table.c.id.in_(list(ids))))).all()
        return {row[0]: row[1] for row in rows}


# Built once per table, with bound parameters: building, coercing and cache-keying it again
# for every batch was a fifth of a small batch's CPU.
@functools.cache
def _add_one(table: Table, column: str) -> Any:
    counter = table.c[column]
    return (update(table).where(table.c.id == bindparam("key"))
            .values({column: counter + bindparam("n")})
            .returning(table.c.id, counter))
