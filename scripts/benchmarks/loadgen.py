"""The client side of parts 6 and 7, run in a process of its own (spawned): users who hold a
tunnel each and start runs over HTTP, and a login burst watched through a tunnel's ping.

It costs the machine as little as it can: raw HTTP/1.1 keep-alive requests (httpx spends
several times more CPU per request) and the `websockets` client, whose frames are parsed only
when they may end a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from datetime import datetime
from typing import Any

TERMINAL = ("execution.completed", "execution.failed", "execution.cancelled")
_TERMINAL_MARKS = tuple(f'"{name}"' for name in TERMINAL)


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client for JSON POSTs on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, token: str | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        for _ in range(100):  # header lines
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def open_tunnel(port: int, token: str) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={token}", open_timeout=30,
                       close_timeout=2, ping_interval=None, max_size=None)
    ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if ready.get("type") != "connection.ready":
        raise RuntimeError(f"unexpected first frame {ready}")
    return ws


class _User:
    """One user: a tunnel, and the runs of theirs waiting for their terminal event."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.waiting: dict[str, asyncio.Future[tuple[float, str]]] = {}
        # Terminal events that came before the 202 was read (the run can end first).
        self.early: dict[str, tuple[float, str]] = {}
        # Wall-clock ms from each terminal event's `ts` (written, just before its commit) to
        # its arrival here: commit → (hint →) tunnel, one machine's clock.
        self.delivery_ms: list[float] = []

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                if not any(mark in raw for mark in _TERMINAL_MARKS):
                    continue
                now = time.monotonic()
                wall = time.time()
                message = json.loads(raw)
                kind = message.get("type")
                if kind not in TERMINAL:
                    continue
                if "ts" in message:
                    self.delivery_ms.append(
                        (wall - datetime.fromisoformat(message["ts"]).timestamp()) * 1000)
                run_id = message["data"]["run_id"]
                waiter = self.waiting.pop(run_id, None)
                if waiter is None:
                    self.early[run_id] = (now, kind)
                elif not waiter.done():
                    waiter.set_result((now, kind))

    async def ended(self, run_id: str, timeout_s: float) -> tuple[float, str] | None:
        if run_id in self.early:
            return self.early.pop(run_id)
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[run_id] = waiter
        try:
            return await asyncio.wait_for(waiter, max(timeout_s, 0.0))
        except TimeoutError:
            return None
        finally:
            self.waiting.pop(run_id, None)


async def _runs(ports: list[int], accounts: list[tuple[str, str]], in_flight: int,
                duration_s: float, grace_s: float, tiers: dict[str, list[int]],
                ) -> dict[str, Any]:
    from scripts.benchmarks.common import cpu_seconds, postgres_cpu_seconds

    def tier_cpu() -> dict[str, float]:
        return {tier: sum(cpu_seconds(pid) for pid in pids) for tier, pids in tiers.items()}

    # User i talks to API replica i mod n, tunnel and requests alike (a sticky balancer).
    port_of = [ports[i % len(ports)] for i in range(len(accounts))]
    users = [_User(await open_tunnel(port, token))
             for port, (token, _) in zip(port_of, accounts, strict=True)]
    readers = [asyncio.create_task(user.read()) for user in users]
    latencies: list[float] = []
    counts = {"accepted": 0, "completed": 0, "in_window": 0, "failed": 0, "never_ended": 0}
    errors: dict[str, int] = {}
    started = time.monotonic()
    deadline = started + duration_s
    cpu0 = os.times()
    tiers0, pg0 = tier_cpu(), postgres_cpu_seconds()
    window_cpu: dict[str, float | None] = {}

    async def at_deadline() -> None:
        await asyncio.sleep(duration_s)
        tiers1, pg1 = tier_cpu(), postgres_cpu_seconds()
        for tier, seconds in tiers1.items():
            window_cpu[f"{tier}_cpu_s"] = seconds - tiers0[tier]
        window_cpu["postgres_cpu_s"] = pg1 - pg0 if pg0 is not None and pg1 is not None \
            else None
        cpu = os.times()
        window_cpu["client_cpu_s"] = (cpu.user + cpu.system) - (cpu0.user + cpu0.system)

    async def slot(user: _User, port: int, token: str, body: bytes) -> None:
        # Closed loop: the next run starts when this slot's run has ended on its tunnel.
        conn = HttpConnection(port)
        try:
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    status, reply = await asyncio.wait_for(
                        conn.post("/api/v1/execution/run", body, token), 30)
                except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    conn.close()
                    await asyncio.sleep(0.05)
                    continue
                if status != 202:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    await asyncio.sleep(0.05)
                    continue
                counts["accepted"] += 1
                run_id = json.loads(reply)["run_id"]
                end = await user.ended(run_id, deadline + grace_s - time.monotonic())
                if end is None:
                    counts["never_ended"] += 1
                    return  # the slot's run is lost: it starts nothing more
                at, kind = end
                if kind != "execution.completed":
                    counts["failed"] += 1
                    continue
                counts["completed"] += 1
                latencies.append((at - sent) * 1000)
                if at <= deadline:
                    counts["in_window"] += 1
        finally:
            conn.close()

    slots = []
    for user, port, (token, flow_id) in zip(users, port_of, accounts, strict=True):
        body = json.dumps({"flow_id": flow_id}).encode()
        slots += [slot(user, port, token, body) for _ in range(in_flight)]
    await asyncio.gather(at_deadline(), *slots)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(user.ws.close() for user in users), return_exceptions=True)
    return {**counts, **window_cpu, "latencies": latencies, "errors": errors,
            "duration_s": duration_s,
            "delivery_ms": [ms for user in users for ms in user.delivery_ms]}


async def _ping_lag(ws: Any, stop: asyncio.Event, every_s: float) -> list[float]:
    """ping → pong round trips on an open tunnel, one every `every_s`, until `stop`."""
    samples: list[float] = []
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "ping", "data": {"n": n}}))
        for _ in range(1000):  # skip other frames (the server's own heartbeat `ping`)
            message = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if message.get("type") == "pong" and message.get("data", {}).get("n") == n:
                break
        samples.append((time.monotonic() - sent) * 1000)
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - sent)))
    return samples


async def _logins(port: int, token: str, credentials: list[tuple[str, str]], concurrency: int,
                  baseline_s: float, every_s: float) -> dict[str, Any]:
    ws = await open_tunnel(port, token)
    try:
        stop = asyncio.Event()
        quiet = asyncio.create_task(_ping_lag(ws, stop, every_s))
        await asyncio.sleep(baseline_s)
        stop.set()
        baseline = await quiet
        statuses: dict[str, int] = {}
        durations: list[float] = []

        async def login(i: int) -> None:
            identifier, password = credentials[i % len(credentials)]
            conn = HttpConnection(port)
            started = time.monotonic()
            try:
                status, _ = await asyncio.wait_for(conn.post(
                    "/api/v1/auth/login",
                    json.dumps({"identifier": identifier, "password": password}).encode()), 120)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
                return
            finally:
                conn.close()
            durations.append((time.monotonic() - started) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

        stop = asyncio.Event()
        watch = asyncio.create_task(_ping_lag(ws, stop, every_s))
        started = time.monotonic()
        await asyncio.gather(*(login(i) for i in range(concurrency)))
        burst_s = time.monotonic() - started
        stop.set()
        during = await watch
    finally:
        await ws.close()
    return {"baseline": baseline, "during": during, "statuses": statuses,
            "burst_s": burst_s, "login_ms": durations}


def _run(coro: Any) -> Any:
    try:
        import uvloop
        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def run_load(port: int, accounts: list[tuple[str, str]], in_flight: int, duration_s: float,
             grace_s: float, server_pid: int) -> dict[str, Any]:
    """Entry point (another process): every account's user opens one tunnel and keeps
    `in_flight` runs of its flow going for `duration_s`, then waits `grace_s` for the last
    ones. accounts: (access token, flow id). The CPU of the server process (and of the
    PostgreSQL server, when it runs on this machine) is read at the window's two ends."""
    return _run(_runs([port], accounts, in_flight, duration_s, grace_s,
                      {"server": [server_pid]}))


def run_load_tiers(ports: list[int], accounts: list[tuple[str, str]], in_flight: int,
                   duration_s: float, grace_s: float,
                   tiers: dict[str, list[int]]) -> dict[str, Any]:
    """`run_load` against several API replicas (user i on `ports[i % n]`), with the CPU of
    each tier's processes (`tiers`: name → pids) read as `<name>_cpu_s`."""
    return _run(_runs(ports, accounts, in_flight, duration_s, grace_s, tiers))


def run_login_burst(port: int, token: str, credentials: list[tuple[str, str]],
                    concurrency: int, baseline_s: float, every_s: float) -> dict[str, Any]:
    """Entry point (another process): ping → pong on a tunnel every `every_s` for
    `baseline_s`, then again while `concurrency` logins run at once."""
    return _run(_logins(port, token, credentials, concurrency, baseline_s, every_s))
