"""Inserting many rows at once: COPY on PostgreSQL, executemany elsewhere.

The event log writer inserts hundreds of rows per transaction. Through SQLAlchemy's
executemany every row pays for bind processing and asyncpg sends one Bind/Execute per row;
`COPY … FROM STDIN (FORMAT binary)` sends the batch as one stream that asyncpg encodes in C,
which made the event log ~30% faster. COPY skips SQLAlchemy's column handling, so this module
does the two parts of it the tables here need: Python-side scalar defaults for missing keys
and JSON encoding (the same encoder the engine uses, app/core/json_codec.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Column, Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.json_codec import dumps

Row = Mapping[str, Any]


async def insert_many(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """Insert `rows` (dicts of column name → value) in the session's transaction. A missing
    key takes the column's scalar default; None is SQL NULL."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        await _copy(session, table, rows)
        return
    # executemany needs one key set per statement.
    by_keys: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        by_keys.setdefault(tuple(row), []).append(row)
    for same_keys in by_keys.values():
        await session.execute(insert(table), list(same_keys))


class _CopyPlan:
    """How one table's rows become COPY records."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = [c.name for c in table.columns]
        self.defaults = {c.name: _scalar_default(c) for c in table.columns}
        self.json_positions = [i for i, c in enumerate(table.columns)
                               if isinstance(c.type, JSON)]

    def records(self, rows: Sequence[Row]) -> list[list[Any]]:
        columns, defaults, json_positions = self.columns, self.defaults, self.json_positions
        complete = len(columns)
        out = []
        for row in rows:
            if len(row) == complete:  # every column given (the event log's rows)
                record = [row[name] for name in columns]
            else:
                record = [row.get(name, defaults[name]) for name in columns]
                if _REQUIRED in record:
                    missing = columns[record.index(_REQUIRED)]
                    raise ValueError(f"{self.table.name}.{missing} has no scalar default; "
                                     "give it in every row")
            for i in json_positions:
                if record[i] is not None:
                    record[i] = dumps(record[i])
            out.append(record)
        return out


_REQUIRED = object()  # a column whose default is computed (uuid4, utcnow): rows must give it


def _scalar_default(column: Column[Any]) -> Any:
    default = column.default
    if default is None:
        return None
    if getattr(default, "is_scalar", False):
        return default.arg  # type: ignore[attr-defined]
    return _REQUIRED


_copy_plan = functools.cache(_CopyPlan)  # one per table


async def _copy(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    plan = _copy_plan(table)
    driver = await driver_connection(session)
    await driver.copy_records_to_table(table.name, records=plan.records(rows),
                                       columns=plan.columns)


async def update_many(session: AsyncSession, table: Table, keys: Sequence[str],
                      rows: Sequence[Row]) -> None:
    """Update rows found by their `keys` columns; each row sets its other items. On
    PostgreSQL the rows that set the same columns go as one `UPDATE … FROM unnest(…)` (one
    statement and one index lookup per row, instead of one statement per row); elsewhere as
    one executemany."""
    by_columns: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(k for k in row if k not in keys)), []).append(row)
    postgres = session.get_bind().dialect.name == "postgresql"
    for columns, same in by_columns.items():
        if not columns:
            continue
        if postgres:
            await _update_unnest(session, table, keys, columns, same)
        else:
            stmt = (update(table)
                    .where(*(table.c[k] == bindparam(f"_key_{k}") for k in keys))
                    .values({c: bindparam(c) for c in columns}))
            await session.execute(stmt, [
                {**{f"_key_{k}": row[k] for k in keys}, **{c: row[c] for c in columns}}
                for row in same])


async def _update_unnest(session: AsyncSession, table: Table, keys: Sequence[str],
                         columns: Sequence[str], rows: Sequence[Row]) -> None:
    names = [*keys, *columns]
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    arrays = []
    for name in names:
        values = [row[name] for row in rows]
        if name in json_columns:
            values = [None if v is None else dumps(v) for v in values]
        arrays.append(values)
    sql = _update_sql(table, tuple(keys), tuple(columns), session.get_bind().dialect)
    driver = await driver_connection(session)
    await driver.execute(sql, *arrays)


@functools.cache  # a handful per table: one per key set and set of columns
def _update_sql(table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
                dialect: Any) -> str:
    names = [*keys, *columns]
    casts = ", ".join(f"${i}::{table.c[name].type.compile(dialect=dialect)}[]"
                      for i, name in enumerate(names, start=1))
    return (f'UPDATE "{table.name}" AS t SET '
            + ", ".join(f'"{c}" = v."{c}"' for c in columns)
            + f" FROM unnest({casts}) AS v(" + ", ".join(f'"{n}"' for n in names) + ") WHERE "
            + " AND ".join(f't."{k}" = v."{k}"' for k in keys))


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
