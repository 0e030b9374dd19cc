"""What every benchmark shares: options, throw-away databases, seeding, statistics."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from alembic.config import Config
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from alembic import command
from app.core.db import create_engine, create_sessionmaker
from app.models import Run, User

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG_URL = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
JWT_SECRET = "bench-secret-" + "x" * 40


@dataclass
class Options:
    quick: bool = False
    only: frozenset[str] = frozenset()
    out: Path = ROOT / "docs" / "BENCHMARKS.md"
    pg_url: str = DEFAULT_PG_URL
    profile_dir: Path | None = None
    langgraph: bool = True
    repeats: int = 7  # light parts (engine, parallelism, event log)
    heavy_repeats: int = 3  # HTTP and tunnels
    warmup: bool = True  # one unmeasured run first (off in quick mode)
    command: str = "scripts/bench"

    @property
    def warm(self) -> str:
        return "after a warm-up" if self.warmup else "without a warm-up"

    def wants(self, part: str) -> bool:
        return not self.only or part in self.only


@dataclass
class Section:
    """One part of the report: a title, a table, notes, and target verdicts."""

    key: str
    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, bool | None]] = field(default_factory=list)  # what, got, ok
    skipped: str | None = None


def progress(message: str) -> None:
    """Progress goes to stderr; stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


# --- statistics --------------------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    """Seconds one call takes (after a collection, so an earlier run's garbage is not billed)."""
    gc.collect()
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds used so far by a process (default: this one)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        _, ticks = _proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return float("nan")
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_stat(text: str, *, children: bool = False) -> tuple[str, int]:
    """A /proc/PID/stat line's command name and its user + system clock ticks (with
    `children`, plus those of its children that ended and were waited for)."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return head[head.find("(") + 1:], ticks


def postgres_cpu_seconds() -> float | None:
    """User + system CPU seconds used so far by the PostgreSQL server processes this machine
    shows, or None when it shows none (a server elsewhere). Backends that ended count too:
    their seconds are in the postmaster's reaped-children figures (a pool that opens and
    closes overflow connections under load ends backends during a window, and counting only
    live processes lost what those had used)."""
    ticks, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, used = _proc_stat(text, children=True)
        if name == "postgres":
            ticks += used
            found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


# --- databases ---------------------------------------------------------------------------------
def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["url"] = url
    return config


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


class Databases:
    """Throw-away databases: PostgreSQL ones named cascade_bench_*, SQLite files in a temp
    directory. Everything is dropped by `close()`."""

    def __init__(self, pg_url: str) -> None:
        self.pg_url = pg_url
        self.tmp = Path(tempfile.mkdtemp(prefix="cascade-bench-"))
        self._created: list[str] = []
        self._pg_ok: bool | None = None
        self._pg_template: str | None = None
        self.pg_version = ""

    def pg_database_url(self, name: str) -> str:
        base, _, _ = _dsn(self.pg_url).rpartition("/")
        return f"{base}/{name}"

    async def _admin(self, sql: str) -> None:
        conn = await asyncio.wait_for(asyncpg.connect(_dsn(self.pg_url)), 10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def pg_available(self) -> bool:
        if self._pg_ok is None:
            try:
                conn = await asyncio.wait_for(asyncpg.connect(_dsn(self.pg_url)), 5)
            except Exception:
                self._pg_ok = False
            else:
                self.pg_version = str(await conn.fetchval("SHOW server_version"))
                await conn.close()
                self._pg_ok = True
        return self._pg_ok

    async def postgres(self, tag: str) -> str:
        """A fresh, migrated PostgreSQL database; returns its URL. The migrations run once,
        into a template database that the others are copied from."""
        if self._pg_template is None:
            template = f"cascade_bench_template_{os.getpid()}"
            await self._admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            await self._admin(f'CREATE DATABASE "{template}"')
            self._created.append(template)
            await asyncio.to_thread(command.upgrade,
                                    alembic_config(self.pg_database_url(template)), "head")
            self._pg_template = template
        name = f"cascade_bench_{tag}_{os.getpid()}"
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._pg_template}"')
        self._created.append(name)
        return self.pg_database_url(name)

    async def sqlite(self, tag: str) -> str:
        """A fresh, migrated SQLite file (a copy of one migrated once)."""
        template = self.tmp / "template.db"
        if not template.exists():
            await asyncio.to_thread(command.upgrade,
                                    alembic_config(f"sqlite+aiosqlite:///{template}"), "head")
        path = self.tmp / f"{tag}.db"
        await asyncio.to_thread(shutil.copy, template, path)
        return f"sqlite+aiosqlite:///{path}"

    async def close(self) -> None:
        for name in reversed(self._created):
            try:
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:
                pass
        self._created.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Store:
    """An engine + sessionmaker on one database, with seeding helpers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url)
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)

    @property
    def backend(self) -> str:
        return "SQLite" if self.url.startswith("sqlite") else "PostgreSQL"

    async def add_users(self, count: int, prefix: str = "bench") -> list[int]:
        tag = uuid.uuid4().hex[:6]
        rows = [{"email": f"{prefix}{i}-{tag}@example.com", "username": f"{prefix}{i}_{tag}",
                 "password_hash": "x"} for i in range(count)]
        async with self.sessionmaker() as session, session.begin():
            ids = [(await session.execute(insert(User).values(**row).returning(User.id)))
                   .scalar_one() for row in rows]
        return [int(i) for i in ids]

    async def add_run(self, run_id: uuid.UUID, user_id: int) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(insert(Run).values(
                id=run_id, user_id=user_id, status="queued", graph={}, provider_id="echo"))

    async def close(self) -> None:
        await self.engine.dispose()
