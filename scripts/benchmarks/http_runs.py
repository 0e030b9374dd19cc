"""Part 4: completed runs per second over HTTP.

A real uvicorn (`python -m uvicorn app.main:create_app --factory`, one process, uvloop and
httptools as `--loop/--http auto` pick them, access log off) serves a fresh PostgreSQL
database. Users and their 2-node flow (`initialPrompt` with a fixed text → `textOutput`,
provider `echo`) are made through the API. A load generator in another process keeps a fixed
number of keep-alive connections busy with `POST /api/v1/execution/run {flow_id}` (closed
loop on the 202) and records when each request was sent. Afterwards the benchmark reads the
log: every accepted run must have all its events (8) and `execution.completed`.

Completed runs/s = runs ÷ (last `execution.completed` − first request). Latency = the
`execution.completed` row's `created_at` (stamped by the writer just before its commit) −
the time the request was sent; both clocks are this machine's wall clock.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from scripts.benchmarks.common import (
    JWT_SECRET,
    ROOT,
    Databases,
    Options,
    Section,
    cpu_seconds,
    fmt,
    median,
    percentile,
    progress,
)
from scripts.benchmarks.loadgen import HttpConnection

EVENTS_PER_RUN = 8  # started, 2 × pending, 2 × running, 2 × completed, execution.completed
FLOW = {
    "nodes": [{"id": "prompt", "type": "initialPrompt", "position": {"x": 0, "y": 0},
               "data": {"prompt": "A lighthouse keeper finds a message in a bottle."}},
              {"id": "out", "type": "textOutput", "position": {"x": 300, "y": 0},
               "data": {}}],
    "edges": [{"id": "e1", "source": "prompt", "target": "out"}],
    "viewport": {"x": 0, "y": 0, "zoom": 1},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornProcess:
    """`uvicorn app.main:create_app --factory` in a child process, on 127.0.0.1."""

    def __init__(self, database_url: str, **settings: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "DATABASE_URL": database_url, "JWT_SECRET": JWT_SECRET,
                    "LOG_LEVEL": "WARNING", "BCRYPT_ROUNDS": "4", "ENV": "development",
                    "DEFAULT_PROVIDER": "echo", **settings}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"cascade-bench-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as log:
            return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                "--log-level", "warning", "--ws-ping-interval", "0"]

    async def start(self, timeout_s: float = 60) -> None:
        self.proc = self._spawn(self.command())
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-2000:]}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("uvicorn did not become healthy in time")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.to_thread(self.proc.wait, 20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
        self.log.unlink(missing_ok=True)


async def make_accounts(client: httpx.AsyncClient, count: int) -> list[tuple[str, str]]:
    """(access token, flow id) for `count` new users, through the API."""
    accounts = []
    tag = uuid.uuid4().hex[:6]
    for i in range(count):
        name = f"bench{i}_{tag}"
        password = "bench-password-123"
        r = await client.post("/api/v1/users", json={"email": f"{name}@example.com",
                                                     "username": name, "password": password})
        r.raise_for_status()
        r = await client.post("/api/v1/auth/login", json={"identifier": name,
                                                          "password": password})
        r.raise_for_status()
        token = r.json()["access_token"]
        r = await client.post("/api/v1/flows", json={"name": "bench", "graph_data": FLOW,
                                                     "provider_id": "echo"},
                              headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        accounts.append((token, r.json()["id"]))
    return accounts


# --- the load generator (runs in another process) ----------------------------------------------
async def _load(port: int, accounts: list[tuple[str, str]], total: int, concurrency: int,
                time_limit_s: float) -> dict[str, Any]:
    sent: list[tuple[str, float]] = []
    errors: dict[str, int] = {}
    counter = iter(range(total))
    deadline = time.monotonic() + time_limit_s
    bodies = [(token, json.dumps({"flow_id": flow}).encode()) for token, flow in accounts]

    async def worker(w: int) -> None:
        conn = HttpConnection(port)
        try:
            for i in counter:
                if time.monotonic() > deadline:
                    return
                token, body = bodies[(i + w) % len(bodies)]
                t = time.time()
                try:
                    status, reply = await asyncio.wait_for(
                        conn.post("/api/v1/execution/run", body, token), 30)
                except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    conn.close()
                    conn = HttpConnection(port)
                    continue
                if status == 202:
                    sent.append((json.loads(reply)["run_id"], t))
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            conn.close()

    started = time.time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return {"sent": sent, "errors": errors, "started": started, "finished": time.time()}


def load_generator(port: int, accounts: list[tuple[str, str]], total: int, concurrency: int,
                   time_limit_s: float) -> dict[str, Any]:
    """Entry point of the load-generator process."""
    try:
        import uvloop
        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_load(port, accounts, total, concurrency, time_limit_s))


# --- reading the outcome from the log ----------------------------------------------------------
async def wait_completed(dsn: str, run_ids: list[uuid.UUID], timeout_s: float,
                         ) -> dict[uuid.UUID, float]:
    """run id → `created_at` (epoch s) of its execution.completed, waiting up to timeout."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:  # bounded by the deadline
            rows = await conn.fetch(
                "SELECT run_id, created_at FROM event_logs WHERE event_name = "
                "'execution.completed' AND run_id = ANY($1::uuid[])", run_ids)
            if len(rows) >= len(run_ids) or time.monotonic() > deadline:
                return {row["run_id"]: row["created_at"].timestamp() for row in rows}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def check_persisted(dsn: str, run_ids: list[uuid.UUID]) -> tuple[int, int]:
    """(runs with all their events, runs that succeeded)."""
    conn = await asyncpg.connect(dsn)
    try:
        complete = await conn.fetchval(
            "SELECT count(*) FROM (SELECT run_id FROM event_logs WHERE run_id = "
            "ANY($1::uuid[]) GROUP BY run_id HAVING count(*) = $2 AND max(run_seq) = $2) t",
            run_ids, EVENTS_PER_RUN)
        succeeded = await conn.fetchval(
            "SELECT count(*) FROM runs WHERE id = ANY($1::uuid[]) AND status = 'succeeded'",
            run_ids)
    finally:
        await conn.close()
    return int(complete), int(succeeded)


async def measure(options: Options, dbs: Databases) -> Section:
    section = Section("http", "4. Runs per second over HTTP")
    if not await dbs.pg_available():
        section.skipped = f"PostgreSQL unreachable at {options.pg_url}"
        return section
    users, concurrency = (2, 4) if options.quick else (8, 32)
    total = 40 if options.quick else 3000
    time_limit = 20.0 if options.quick else 90.0
    url = await dbs.postgres("http")
    dsn = url
    # Connections kept open for every request in flight plus the log writer: past
    # DB_POOL_SIZE the pool opens overflow connections and closes them after one use, and
    # that churn (a TCP + TLS-attempt handshake per request) was 6% of the server's CPU.
    pool_size = concurrency + 8
    server = UvicornProcess(url, MAX_RUNS_PER_USER="1000000", DB_POOL_SIZE=str(pool_size))
    results: list[dict[str, float]] = []
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            accounts = await make_accounts(client, users)
        for round_no in range(0 if options.warmup else 1, options.heavy_repeats + 1):
            n = max(20, total // 5) if round_no == 0 else total
            cpu0 = server.cpu_seconds()
            load = await loop.run_in_executor(pool, load_generator, server.port, accounts, n,
                                              concurrency, time_limit)
            sent: dict[uuid.UUID, float] = {uuid.UUID(r): t for r, t in load["sent"]}
            done = await wait_completed(dsn, list(sent), 60 if not options.quick else 20)
            cpu = server.cpu_seconds() - cpu0
            if round_no == 0:  # the warm-up round
                continue
            complete, succeeded = await check_persisted(dsn, list(sent))
            first = min(sent.values())
            last = max(done.values()) if done else float("nan")
            latencies = [(done[r] - t) * 1000 for r, t in sent.items() if r in done]
            window = last - first
            result = {
                "accepted": len(sent), "completed": len(done), "persisted": complete,
                "succeeded": succeeded, "errors": sum(load["errors"].values()),
                "runs_per_s": len(done) / window if window > 0 else float("nan"),
                "accept_per_s": len(sent) / (load["finished"] - load["started"]),
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "server_cpu": cpu / window if window > 0 else float("nan"),
            }
            results.append(result)
            progress(f"  http round {round_no}: {result['runs_per_s']:.0f} runs/s, p50 "
                  f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                  f"{result['completed']}/{result['accepted']} completed, errors "
                  f"{load['errors']}")
    finally:
        pool.shutdown(cancel_futures=True)
        await server.stop()

    def med(key: str) -> float:
        return median([r[key] for r in results])

    all_persisted = all(r["persisted"] == r["accepted"] == r["completed"] == r["succeeded"]
                        for r in results)
    errors = sum(int(r["errors"]) for r in results)
    section.headers = ["setup", "completed runs/s", "p50 ms", "p99 ms", "accepted runs/s",
                       "server CPU", "runs (each round)", "every event persisted"]
    section.rows.append([
        f"uvicorn × 1 on PostgreSQL, {concurrency} keep-alive connections, {users} users",
        fmt(med("runs_per_s"), 0), fmt(med("p50_ms")), fmt(med("p99_ms")),
        fmt(med("accept_per_s"), 0), f"{med('server_cpu') * 100:.0f}% of a core",
        f"{int(med('accepted')):,}", "yes" if all_persisted else "**no**"])
    section.targets.append(("≥ 300 completed 2-node runs/s over HTTP, every event persisted",
                            f"{med('runs_per_s'):,.0f} runs/s",
                            med("runs_per_s") >= 300 and all_persisted))
    section.notes += [
        f"Median of {options.heavy_repeats} rounds {options.warm} round; each round "
        f"{total:,} runs (bounded to {time_limit:g} s). `MAX_RUNS_PER_USER` is raised for "
        "the load test (the per-user limit would answer 429 to a closed loop on the 202). "
        f"`DB_POOL_SIZE={pool_size}` (default 20): the pool holds a connection for each of "
        f"the {concurrency} requests in flight and the log writer.",
        f"Each run writes {EVENTS_PER_RUN} events; the check reads them back from "
        "`event_logs` (count and gapless `run_seq`) and the run row's status.",
        "Load generator: a separate process (raw HTTP/1.1 keep-alive on 127.0.0.1)."
        + (f" Request errors: {errors}." if errors else ""),
    ]
    return section
