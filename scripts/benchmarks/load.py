"""Parts 6 and 7: the load users see, and the event loop during a login burst.

The server is `scripts/dev` itself (one uvicorn process, default settings, access log on),
on the embedded default (a SQLite file) and on PostgreSQL. The clients run in another process
(scripts/benchmarks/loadgen.py) on the same machine.

6. Users who each hold one tunnel and keep a few two-node runs in flight with
   `POST /api/v1/execution/run` (closed loop: a user's slot starts its next run when its own
   run's `execution.completed` reaches that user's tunnel). A run counts when its
   `execution.completed` arrives within the window; latency is request sent → that event
   received (one clock, the client's). A run accepted that has no terminal event by the end of
   the window plus a grace period never ended.
7. While a burst of concurrent logins runs, a tunnel sends `ping` every 10 ms and times each
   `pong`: the server answers it from its event loop, so the round trip is how long anything
   (every tunnel, every run) waits behind the password checks. Nothing new is exposed by the
   server for this.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx

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
from scripts.benchmarks.http_runs import FLOW, UvicornProcess

USERS, IN_FLIGHT = 8, 4  # users × runs each keeps in flight
WINDOW_S = {"quick": 3.0, "full": 20.0}
GRACE_S = 10.0
TARGETS = {"SQLite": 200.0, "PostgreSQL": 300.0}  # completed runs/s
PASSWORD = "bench-password-123"
LAG_TARGET_MS = 50.0
LAG_EVERY_S = 0.010


class DevServer(UvicornProcess):
    """`scripts/dev` with only the database, host and port set: what a user starts."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.env = {**os.environ, "DATABASE_URL": database_url, "HOST": "127.0.0.1",
                    "PORT": str(self.port)}

    def command(self) -> list[str]:
        return ["bash", str(ROOT / "scripts" / "dev")]


async def _accounts(server: DevServer, count: int) -> list[dict[str, str]]:
    """`count` users made through the API, each with a token and the two-node flow."""
    accounts = []
    tag = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for i in range(count):
            name = f"load{i}_{tag}"
            r = await client.post("/api/v1/users", json={
                "email": f"{name}@example.com", "username": name, "password": PASSWORD})
            r.raise_for_status()
            r = await client.post("/api/v1/auth/login",
                                  json={"identifier": name, "password": PASSWORD})
            r.raise_for_status()
            token = r.json()["access_token"]
            r = await client.post("/api/v1/flows", json={"name": "load", "graph_data": FLOW,
                                                         "provider_id": "echo"},
                                  headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            accounts.append({"name": name, "token": token, "flow": r.json()["id"]})
    return accounts


async def _databases(dbs: Databases, tag: str) -> list[tuple[str, str]]:
    out = [("SQLite", await dbs.sqlite(tag))]
    if await dbs.pg_available():
        out.append(("PostgreSQL", await dbs.postgres(tag)))
    return out


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


# --- part 6 ------------------------------------------------------------------------------------
async def measure(options: Options, dbs: Databases) -> Section:
    section = Section("load", "6. The load users see: tunnels and REST runs")
    users, in_flight = (2, 2) if options.quick else (USERS, IN_FLIGHT)
    window = WINDOW_S["quick" if options.quick else "full"]
    rounds = 1 if options.quick else options.heavy_repeats
    section.headers = ["database", "completed runs/s", "p50 ms", "p99 ms", "never ended",
                       "failed", "request errors", "runs (each round)", "server CPU",
                       "PostgreSQL CPU", "load generator CPU"]
    loop = asyncio.get_running_loop()
    for backend, url in await _databases(dbs, "load"):
        server = DevServer(url)
        pool = _pool()
        results: list[dict[str, Any]] = []
        try:
            await server.start(timeout_s=120)
            accounts = await _accounts(server, users)
            pairs = [(a["token"], a["flow"]) for a in accounts]
            assert server.proc is not None
            for round_no in range(0 if options.warmup else 1, rounds + 1):
                seconds = 3.0 if round_no == 0 else window
                result = await loop.run_in_executor(
                    pool, loadgen.run_load, server.port, pairs, in_flight, seconds, GRACE_S,
                    server.proc.pid)
                if round_no == 0:  # the warm-up round
                    continue
                results.append(result)
                progress(f"  load {backend} round {round_no}: "
                         f"{result['in_window'] / seconds:.0f} runs/s, p50 "
                         f"{percentile(result['latencies'], 50):.1f} ms, p99 "
                         f"{percentile(result['latencies'], 99):.1f} ms, never ended "
                         f"{result['never_ended']}, failed {result['failed']}, errors "
                         f"{result['errors']}")
        finally:
            pool.shutdown(cancel_futures=True)
            await server.stop()
        section.rows.append(_row(backend, results))
        never = sum(r["never_ended"] for r in results)
        failed = sum(r["failed"] for r in results)
        rate = median([r["in_window"] / r["duration_s"] for r in results])
        section.targets.append((
            f"≥ {TARGETS[backend]:.0f} two-node runs/s on {backend} as users load it "
            f"({users} users × {in_flight} runs in flight, one tunnel each), 0 never ended",
            f"{rate:,.0f} runs/s, {never} never ended, {failed} failed",
            rate >= TARGETS[backend] and never == 0 and failed == 0))
    if not await dbs.pg_available():
        section.notes.append(f"PostgreSQL unreachable at {options.pg_url}: its row skipped.")
    section.notes += [
        "Server: `scripts/dev` (one uvicorn process, default settings: `DB_POOL_SIZE`, "
        "`BCRYPT_ROUNDS`, access log on) with `DATABASE_URL` set to a fresh database; SQLite "
        "is a file, as the embedded default. Users, their tokens and their flow "
        "(`initialPrompt` → `textOutput`, provider `echo`) are made through the API.",
        f"Load: {users} users, each with one tunnel (`websockets` client) and {in_flight} "
        "runs in flight, in one other process on the same machine (raw HTTP/1.1 keep-alive "
        "requests). Closed loop: a slot starts its next run when its run's "
        f"`execution.completed` reaches its user's tunnel. Window {window:g} s"
        + (" after a 3 s warm-up round" if options.warmup else "")
        + f"; median of {rounds} round(s).",
        "Completed runs/s = runs whose `execution.completed` arrived within the window ÷ the "
        "window. Latency: request sent → `execution.completed` received, by the client's "
        f"clock. Never ended: accepted (202) with no terminal event {GRACE_S:g} s after the "
        "window; failed: ended with `execution.failed` or `execution.cancelled`.",
        "CPU columns: user + system time during the window, as a share of one core (the "
        "machine has " + f"{os.cpu_count()} cores, shared by the server, PostgreSQL and "
        "the load generator).",
    ]
    return section


def _row(backend: str, results: list[dict[str, Any]]) -> list[str]:
    def med(key: str) -> float:
        return median([r[key] for r in results])

    def share(key: str) -> str:
        values = [r[key] / r["duration_s"] for r in results if r.get(key) is not None]
        return f"{median(values) * 100:.0f}% of a core" if values else "—"

    return [
        backend, fmt(median([r["in_window"] / r["duration_s"] for r in results]), 0),
        fmt(median([percentile(r["latencies"], 50) for r in results])),
        fmt(median([percentile(r["latencies"], 99) for r in results])),
        str(sum(r["never_ended"] for r in results)), str(sum(r["failed"] for r in results)),
        str(sum(sum(r["errors"].values()) for r in results)), f"{int(med('accepted')):,}",
        share("server_cpu_s"), share("postgres_cpu_s") if backend == "PostgreSQL" else "—",
        share("client_cpu_s"),
    ]


# --- part 7 ------------------------------------------------------------------------------------
async def measure_logins(options: Options, dbs: Databases) -> Section:
    section = Section("logins", "7. Event loop lag during a login burst")
    users, burst = (2, 4) if options.quick else (USERS, 32)
    baseline_s = 1.0 if options.quick else 3.0
    section.headers = ["database", "concurrent logins", "burst s", "logins answered 200",
                       "lag p50 ms (quiet)", "lag p50 ms", "lag p99 ms", "lag max ms",
                       "pings during the burst"]
    loop = asyncio.get_running_loop()
    for backend, url in await _databases(dbs, "logins"):
        server = DevServer(url)
        pool = _pool()
        try:
            await server.start(timeout_s=120)
            accounts = await _accounts(server, users)
            credentials = [(a["name"], PASSWORD) for a in accounts]
            if options.warmup:
                await loop.run_in_executor(pool, loadgen.run_login_burst, server.port,
                                           accounts[0]["token"], credentials, 2, 0.2,
                                           LAG_EVERY_S)
            result = await loop.run_in_executor(pool, loadgen.run_login_burst, server.port,
                                                accounts[0]["token"], credentials, burst,
                                                baseline_s, LAG_EVERY_S)
        finally:
            pool.shutdown(cancel_futures=True)
            await server.stop()
        during, quiet = result["during"], result["baseline"]
        ok = result["statuses"].get("200", 0)
        p99 = percentile(during, 99)
        progress(f"  logins {backend}: {burst} logins in {result['burst_s']:.2f} s, "
                 f"statuses {result['statuses']}, lag p50 {percentile(during, 50):.1f} / "
                 f"p99 {p99:.1f} / max {max(during, default=float('nan')):.1f} ms")
        section.rows.append([
            backend, str(burst), fmt(result["burst_s"], 2), f"{ok} of {burst}",
            fmt(percentile(quiet, 50)), fmt(percentile(during, 50)), fmt(p99),
            fmt(max(during, default=float("nan"))), str(len(during))])
        section.targets.append((
            f"event loop lag during {burst} concurrent logins < {LAG_TARGET_MS:.0f} ms "
            f"({backend}, p99 of ping → pong every {LAG_EVERY_S * 1000:.0f} ms)",
            f"p99 {fmt(p99)} ms, max {fmt(max(during, default=float('nan')))} ms; "
            f"{ok} of {burst} logins answered 200",
            p99 < LAG_TARGET_MS and ok == burst))
    section.notes += [
        "Server: `scripts/dev` as in part 6 (default `BCRYPT_ROUNDS`); the users are made "
        f"through the API. The burst: {burst} logins at once (raw HTTP/1.1, one connection "
        "each) over the users, correct passwords, from another process.",
        f"Lag: one tunnel sends `ping` every {LAG_EVERY_S * 1000:.0f} ms (the next after the "
        "last `pong`) and times the round trip; the server answers from its event loop, so "
        "while a password check holds the loop every tunnel and run waits as long. The quiet "
        f"column is the same probe for {baseline_s:g} s before the burst.",
    ]
    return section
