"""Part 3: event log throughput through `event_bus.emit`.

Many concurrent emitters (each awaits `bus.emit(event)` for one event at a time, so an event
is committed and dispatched before its emitter sends the next) write small persisted events
for a handful of users. The floor, measured in the same run on the same server: asyncpg's
`copy_records_to_table` in batches of 500 (one transaction each) into a table made with
`LIKE event_logs INCLUDING ALL` (same columns, indexes and unique constraints; no foreign
keys). For SQLite the floor is stdlib `sqlite3.executemany` of 500 rows per transaction into
a copy of the `event_logs` DDL, with the app's pragmas. Both floors make ids and JSON the way
the app does (`uuid7_batch`, the orjson codec), so the floor is the cheapest honest one.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from datetime import UTC, datetime

import asyncpg

from app.core.events import Event, EventTypes
from app.core.ids import uuid7_batch
from app.core.json_codec import dumps
from scripts.benchmarks.common import (
    Databases,
    Options,
    Section,
    Store,
    fmt,
    median,
    progress,
    ratio,
)
from scripts.benchmarks.engine import make_bus

COLUMNS = ["id", "event_name", "payload", "user_id", "project_id", "run_id", "run_seq",
           "user_seq", "session_id", "created_at"]
FLOOR_BATCH = 500
USERS = 20


def _payload(emitter: int, i: int) -> dict[str, object]:
    return {"node_id": f"n{emitter}", "status": "running", "i": i}


async def bus_rate(store: Store, users: list[int], emitters: int, per_emitter: int,
                   time_limit_s: float) -> float:
    """Events per second through `bus.emit` from `emitters` concurrent emitters."""
    bus = make_bus(store)
    bus.start()
    deadline = time.monotonic() + time_limit_s
    done = 0

    async def emitter(k: int) -> None:
        nonlocal done
        user_id = users[k % len(users)]
        for i in range(per_emitter):
            if time.monotonic() > deadline:
                return
            await bus.emit(Event(EventTypes.EXECUTION_NODE_STATUS, _payload(k, i),
                                 user_id=user_id))
            done += 1

    try:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(emitter(k) for k in range(emitters))),
                               time_limit_s + 30)
        elapsed = time.perf_counter() - started
    finally:
        await bus.stop()
    return done / elapsed


class PgCopyFloor:
    def __init__(self, url: str, users: list[int]) -> None:
        self.url = url.replace("postgresql+asyncpg://", "postgresql://")
        self.users = users
        self.seq = itertools.count(1)

    async def setup(self) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute("CREATE TABLE bench_copy_floor (LIKE event_logs INCLUDING ALL)")
        finally:
            await conn.close()

    async def rate(self, total: int) -> float:
        conn = await asyncpg.connect(self.url)
        try:
            started = time.perf_counter()
            for start in range(0, total, FLOOR_BATCH):
                now = datetime.now(UTC)
                records = []
                end = min(start + FLOOR_BATCH, total)
                for i, event_id in zip(range(start, end), uuid7_batch(end - start),
                                       strict=True):
                    seq = next(self.seq)
                    records.append((event_id, EventTypes.EXECUTION_NODE_STATUS,
                                    dumps(_payload(i % 97, i)),
                                    self.users[seq % len(self.users)], None, None, None, seq,
                                    None, now))
                await conn.copy_records_to_table("bench_copy_floor", records=records,
                                                 columns=COLUMNS)
            elapsed = time.perf_counter() - started
        finally:
            await conn.close()
        return total / elapsed


class SqliteFloor:
    def __init__(self, path: str, users: list[int]) -> None:
        self.path = path
        self.users = users
        self.seq = itertools.count(1)

    def setup(self) -> None:
        with sqlite3.connect(self.path) as db:
            ddl = [row[0] for row in db.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'event_logs' AND sql IS NOT "
                "NULL ORDER BY type DESC")]
            for sql in ddl:
                db.execute(sql.replace("event_logs", "bench_floor"))

    def rate(self, total: int) -> float:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                db.execute(f"PRAGMA {pragma}")
            sql = (f"INSERT INTO bench_floor ({', '.join(COLUMNS)}) VALUES "
                   f"({', '.join('?' for _ in COLUMNS)})")
            started = time.perf_counter()
            for start in range(0, total, FLOOR_BATCH):
                now = datetime.now(UTC).isoformat(sep=" ")
                rows = []
                end = min(start + FLOOR_BATCH, total)
                for i, event_id in zip(range(start, end), uuid7_batch(end - start),
                                       strict=True):
                    seq = next(self.seq)
                    rows.append((event_id.hex, EventTypes.EXECUTION_NODE_STATUS,
                                 dumps(_payload(i % 97, i)),
                                 self.users[seq % len(self.users)], None, None, None, seq,
                                 None, now))
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, rows)
                db.execute("COMMIT")
            elapsed = time.perf_counter() - started
        finally:
            db.close()
        return total / elapsed


async def measure(options: Options, dbs: Databases) -> Section:
    section = Section("eventlog", "3. Event log throughput")
    emitters, per_emitter = (50, 10) if options.quick else (500, 40)
    total = emitters * per_emitter
    time_limit = 10.0 if options.quick else 60.0
    rates: dict[str, list[float]] = {}
    stores: list[Store] = []
    try:
        sqlite = Store(await dbs.sqlite("eventlog"))
        stores.append(sqlite)
        sqlite_users = await sqlite.add_users(USERS)
        sqlite_floor = SqliteFloor(sqlite.url.split(":///", 1)[1], sqlite_users)
        sqlite_floor.setup()
        pg: Store | None = None
        pg_users: list[int] = []
        pg_floor: PgCopyFloor | None = None
        if await dbs.pg_available():
            pg = Store(await dbs.postgres("eventlog"))
            stores.append(pg)
            pg_users = await pg.add_users(USERS)
            pg_floor = PgCopyFloor(pg.url, pg_users)
            await pg_floor.setup()
        else:
            section.notes.append("PostgreSQL unreachable: only SQLite measured.")

        async def one_round() -> dict[str, float]:
            out: dict[str, float] = {}
            if pg is not None and pg_floor is not None:
                out["pg_floor"] = await pg_floor.rate(total)
                out["pg_bus"] = await bus_rate(pg, pg_users, emitters, per_emitter, time_limit)
            out["sqlite_floor"] = await asyncio.to_thread(sqlite_floor.rate, total)
            out["sqlite_bus"] = await bus_rate(sqlite, sqlite_users, emitters, per_emitter,
                                               time_limit)
            return out

        if options.warmup:
            await one_round()
        for _ in range(options.repeats):
            for key, value in (await one_round()).items():
                rates.setdefault(key, []).append(value)
    finally:
        for store in stores:
            await store.close()

    med = {key: median(values) for key, values in rates.items()}
    for key, value in med.items():
        progress(f"  eventlog {key}: {value:,.0f} events/s")
    pg_floor_rate = med.get("pg_floor")
    section.headers = ["writer", "events/s", "÷ PostgreSQL COPY floor",
                       "÷ same-database floor"]
    rows = [(f"PostgreSQL: `bus.emit`, {emitters} concurrent emitters", "pg_bus", "pg_floor"),
            ("PostgreSQL floor: asyncpg COPY, batches of 500", "pg_floor", "pg_floor"),
            (f"SQLite: `bus.emit`, {emitters} concurrent emitters", "sqlite_bus",
             "sqlite_floor"),
            ("SQLite floor: sqlite3 executemany, batches of 500", "sqlite_floor",
             "sqlite_floor")]
    for label, key, own_floor in rows:
        if key not in med:
            continue
        section.rows.append([label, fmt(med[key], 0), fmt(ratio(med[key], pg_floor_rate), 2),
                             fmt(ratio(med[key], med.get(own_floor)), 2)])
    pg_rate = med.get("pg_bus")
    if pg_rate is not None and pg_floor_rate is not None:
        section.targets.append(("event log on PostgreSQL ≥ 20,000 events/s",
                                f"{pg_rate:,.0f} events/s", pg_rate >= 20_000))
        share = pg_rate / pg_floor_rate
        section.targets.append(("event log on PostgreSQL ≥ ⅓ of the COPY floor",
                                f"{share:.2f} of {pg_floor_rate:,.0f} events/s",
                                share >= 1 / 3))
    section.notes += [
        f"{total:,} events per measurement ({emitters} emitters × {per_emitter}, "
        f"{USERS} users, payload ~60 bytes of JSON); median of {options.repeats} "
        f"{options.warm} round; the bus uses the production batch size (500) and the real "
        "subscribers (the tunnel bridge, no tunnel open).",
        "The bus numbers every event gaplessly per user (`UPDATE users … RETURNING` in the "
        "same transaction); the floor writes precomputed numbers and pays no foreign-key "
        "checks.",
    ]
    return section
