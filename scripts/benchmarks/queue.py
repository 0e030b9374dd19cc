"""Part 9: queue mode (DESIGN.md §10) — API replicas and worker processes on PostgreSQL.

The load of part 6 (users each holding a tunnel and keeping two-node runs in flight with
`POST /api/v1/execution/run`, a run counted when its `execution.completed` reaches its owner's
tunnel) against three set-ups started as the README says, each on a fresh database:

* inline: one `scripts/dev` (the baseline the ratios are taken against, in the same run);
* queue 1 + 1: one `scripts/dev` with `EXECUTION_MODE=queue` and one `scripts/worker`;
* queue 2 + 2: two replicas and two workers; user i talks to replica i mod 2 (tunnel and
  requests), so half the events cross from a worker to a replica that did not enqueue them.

Besides runs/s and latency it reports the enqueue → pick-up delay (a run's `started_at` −
its `created_at`, both stamped by the app just before their commits), the commit → tunnel
delay of the terminal events (the event's `ts`, stamped just before its commit, to its
arrival on the client, one clock: in queue mode that is the commit, the NOTIFY hint that
carries the event, the replica's tunnel queue and the send), and the CPU seconds per run of
each tier (API processes, worker processes, PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import asyncpg

from app.core.config import Settings
from scripts.benchmarks import loadgen
from scripts.benchmarks.common import (
    ROOT,
    Databases,
    Options,
    Section,
    fmt,
    median,
    percentile,
    progress,
)
from scripts.benchmarks.load import GRACE_S, IN_FLIGHT, USERS, WINDOW_S, DevServer, _accounts, _pool

RATIO_TARGET = 0.7  # queue 1 + 1 against inline, runs/s
LIGHT_WINDOW_S = 10.0  # the light load's window: one run in flight per user
DELIVERY_TARGET_MS = 50.0  # hint → tunnel, p99
SETUPS = [("inline", 1, 0), ("queue 1 + 1", 1, 1), ("queue 2 + 2", 2, 2)]


def _light_window_s(options: Options) -> float:
    return WINDOW_S["quick"] if options.quick else LIGHT_WINDOW_S


def _default(name: str) -> object:
    return Settings.model_fields[name].default


class Worker:
    """`scripts/worker` with the database set, as the README starts it."""

    def __init__(self, database_url: str) -> None:
        self.env = {**os.environ, "DATABASE_URL": database_url, "EXECUTION_MODE": "queue"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "worker")], cwd=ROOT,
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def _until_workers(url: str, n: int, timeout_s: float = 90) -> None:
    """Wait until `n` workers have recorded themselves (their poll runs)."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await conn.fetchval("SELECT count(*) FROM workers") < n:
            if loop.time() > deadline:
                raise RuntimeError(f"{n} worker(s) did not start in {timeout_s:g} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _pickup_ms(url: str) -> list[float]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT extract(epoch FROM started_at - created_at) * 1000 "
                                "FROM runs WHERE started_at IS NOT NULL")
    finally:
        await conn.close()
    return [float(row[0]) for row in rows]


async def _measure_setup(name: str, apis: int, workers: int, url: str, options: Options,
                         pool: ProcessPoolExecutor, round_no: int) -> dict[str, Any]:
    """One round of a set-up on a fresh database: start it, warm it up, measure the full
    load, then the light load (one run in flight per user), stop it."""
    users, in_flight = (2, 2) if options.quick else (USERS, IN_FLIGHT)
    window = WINDOW_S["quick" if options.quick else "full"]
    light_window = _light_window_s(options)
    mode = {"EXECUTION_MODE": "queue"} if workers else {}
    servers = [DevServer(url) for _ in range(apis)]
    for server in servers:
        server.env.update(mode)
    pool_workers = [Worker(url) for _ in range(workers)]
    loop = asyncio.get_running_loop()
    try:
        for server in servers:  # one after another: each migrates at start-up
            await server.start(timeout_s=120)
        for worker in pool_workers:
            worker.start()
        if workers:
            await _until_workers(url, workers)
        accounts = await _accounts(servers[0], users)
        pairs = [(a["token"], a["flow"]) for a in accounts]
        tiers = {"api": [s.proc.pid for s in servers if s.proc is not None],
                 "worker": [w.proc.pid for w in pool_workers if w.proc is not None]}
        ports = [s.port for s in servers]

        async def load(runs_each: int, seconds: float) -> dict[str, Any]:
            return await loop.run_in_executor(pool, loadgen.run_load_tiers, ports, pairs,
                                              runs_each, seconds, GRACE_S, tiers)

        if options.warmup:
            await load(in_flight, 3.0)
        full = await load(in_flight, window)
        light = await load(1, light_window)
        progress(f"  queue part, {name} round {round_no}: "
                 f"{full['in_window'] / window:.0f} runs/s, p99 "
                 f"{percentile(full['latencies'], 99):.1f} ms, delivery p99 "
                 f"{percentile(full['delivery_ms'], 99):.1f} ms (light load "
                 f"{percentile(light['delivery_ms'], 99):.1f} ms), never ended "
                 f"{full['never_ended'] + light['never_ended']}, failed "
                 f"{full['failed'] + light['failed']}")
        pickup = await _pickup_ms(url) if workers else []
    finally:
        for worker in pool_workers:
            await worker.stop()
        for server in servers:
            await server.stop()
    return {"results": [full], "light": [light], "pickup_ms": pickup}


async def measure(options: Options, dbs: Databases) -> Section:
    section = Section("queue", "9. Queue mode: API replicas and workers on PostgreSQL")
    section.headers = ["set-up", "completed runs/s", "× inline", "p50 ms", "p99 ms",
                       "never ended", "failed", "enqueue → pick-up p50 / p99 ms",
                       "commit → tunnel p50 / p99 ms",
                       "light load: commit → tunnel p50 / p99 ms", "API CPU ms/run",
                       "worker CPU ms/run", "PostgreSQL CPU ms/run"]
    if not await dbs.pg_available():
        section.skipped = f"PostgreSQL unreachable at {options.pg_url}"
        return section
    pool = _pool()
    measured: dict[str, dict[str, Any]] = {
        name: {"results": [], "light": [], "pickup_ms": []} for name, _a, _w in SETUPS}
    # Rounds interleave the set-ups (inline, 1 + 1, 2 + 2, inline, …), each round on a
    # fresh start: a drift of the shared machine then weighs on every set-up alike instead
    # of on whichever ran last (run one after another, one set-up's rounds varied ±15 %).
    rounds = 1 if options.quick else options.heavy_repeats
    try:
        for round_no in range(1, rounds + 1):
            for i, (name, apis, workers) in enumerate(SETUPS):
                url = await dbs.postgres(f"queue{i}")
                this = await _measure_setup(name, apis, workers, url, options, pool, round_no)
                for key, values in this.items():
                    measured[name][key] += values
    finally:
        pool.shutdown(cancel_futures=True)

    def rate(name: str) -> float:
        return median([r["in_window"] / r["duration_s"] for r in measured[name]["results"]])

    def per_run_ms(name: str, key: str) -> str:
        values = [r[key] / r["in_window"] * 1000 for r in measured[name]["results"]
                  if r.get(key) is not None and r["in_window"]]
        return fmt(median(values), 2) if values else "—"

    def delivery_ms(name: str, load: str) -> list[float]:
        return [ms for r in measured[name][load] for ms in r["delivery_ms"]]

    inline = rate("inline")
    for name, _apis, workers in SETUPS:
        results = measured[name]["results"]
        both = results + measured[name]["light"]
        delivery, light = delivery_ms(name, "results"), delivery_ms(name, "light")
        pickup = measured[name]["pickup_ms"]
        section.rows.append([
            name, fmt(rate(name), 0), fmt(rate(name) / inline, 2) if inline else "—",
            fmt(median([percentile(r["latencies"], 50) for r in results])),
            fmt(median([percentile(r["latencies"], 99) for r in results])),
            str(sum(r["never_ended"] for r in both)), str(sum(r["failed"] for r in both)),
            f"{fmt(percentile(pickup, 50))} / {fmt(percentile(pickup, 99))}" if workers
            else "—",
            f"{fmt(percentile(delivery, 50))} / {fmt(percentile(delivery, 99))}",
            f"{fmt(percentile(light, 50))} / {fmt(percentile(light, 99))}",
            per_run_ms(name, "api_cpu_s"),
            per_run_ms(name, "worker_cpu_s") if workers else "—",
            per_run_ms(name, "postgres_cpu_s"),
        ])
    one = rate("queue 1 + 1")
    never = sum(r["never_ended"] for m in measured.values() for r in m["results"] + m["light"])
    section.targets.append((
        f"queue mode with 1 API + 1 worker ≥ {RATIO_TARGET:g}× inline mode's runs/s "
        "(same load, same run), 0 never ended",
        f"{one:,.0f} against {inline:,.0f} runs/s = {one / inline:.2f}×, {never} never ended"
        if inline else "inline measured nothing", bool(inline) and one / inline >= RATIO_TARGET
        and never == 0))
    for load, label in (("results", "full load"), ("light", "light load")):
        for name in [name for name, _apis, workers in SETUPS if workers]:
            p99 = percentile(delivery_ms(name, load), 99)
            section.targets.append((
                f"hint → tunnel p99 < {DELIVERY_TARGET_MS:g} ms ({name}, {label})",
                f"p99 {p99:.1f} ms (commit → tunnel, terminal events; inline "
                f"{percentile(delivery_ms('inline', load), 99):.1f} ms)",
                p99 < DELIVERY_TARGET_MS))
    users, in_flight = (2, 2) if options.quick else (USERS, IN_FLIGHT)
    section.notes += [
        f"Load as part 6: {users} users × {in_flight} runs in flight, one tunnel each, in one "
        "other process; user i on replica i mod n. Every process is started the README's way "
        "(`scripts/dev`, `scripts/worker`, default settings: `WORKER_CONCURRENCY` "
        f"{_default('WORKER_CONCURRENCY')}, `DB_POOL_SIZE` {_default('DB_POOL_SIZE')}, "
        f"`RUN_POLL_S` {_default('RUN_POLL_S')} s) on its own fresh database; all share this "
        f"machine's {os.cpu_count()} cores with PostgreSQL and the load generator, so 2 + 2 "
        "measures the cost of the split here, not the capacity of more machines.",
        "CPU ms/run: user + system CPU of the tier's processes during the window ÷ the runs "
        "completed in it; with these figures, runs/s a tier can serve ≈ 1000 × cores ÷ its "
        "CPU ms/run.",
        "Rounds interleave the set-ups (inline, 1 + 1, 2 + 2, then again), each round a "
        "fresh start on a fresh database: the figures are medians over the rounds.",
        "enqueue → pick-up: `runs.started_at − runs.created_at` over every run of the set-up "
        "(warm-ups included). commit → tunnel: the terminal event's `ts` to its arrival. "
        "Under the full load the 2 cores are saturated, so that latency is mostly waiting "
        "for a core (inline mode's own p99 is in the targets beside it); the light load "
        f"({users} users × 1 run in flight, {_light_window_s(options):g} s a round) shows "
        "the path itself: commit, NOTIFY, the replica's tunnel, the send.",
    ]
    return section
