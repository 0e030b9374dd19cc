"""Part 5: tunnel fan-out.

The app runs in this process under a real uvicorn on 127.0.0.1 (the test suite's LiveServer
pattern) on a fresh PostgreSQL database, so the benchmark can emit on its bus and watch its
ConnectionManager. A client process opens a fleet of 1,000 tunnels — FLEETS lists the shapes,
users × tunnels per user, from "several users with many tabs" to "one tab per user" — plus
one "observer" tunnel of its own user, reads every frame and records when each event arrived.

Load: FLEET_RATE persisted events per second, round-robin over the fleet users (each event
reaches all of its user's tunnels), plus STALL_RATE ephemeral stream deltas/s of
STALL_PAYLOAD random bytes for the observer's user (a token stream; not logged). A
subscriber stamps the time each event is dispatched, i.e. right after its
transaction committed; latency = receipt time in the client − that stamp (same machine,
same wall clock).

Each round has two phases of equal load. A: every tunnel reads. B: the observer tunnel stops
reading (its socket has a 4 KB receive buffer); the server must evict it (close 4409 when its
bounded send queue overflows) while the fleet's p99 stays where it was. Then the observer
reconnects for the next round.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import multiprocessing
import os
import socket
import time
from array import array
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

from scripts.benchmarks.common import (
    JWT_SECRET,
    Databases,
    Options,
    Section,
    Store,
    cpu_seconds,
    fmt,
    median,
    percentile,
    progress,
)

STALL_PAYLOAD = 8192
# Fleets of 1,000 tunnels: (users, tunnels per user). The fan-out of one event is the
# number of tunnels of its user. The contract allows 5 tunnels per user
# (WS_MAX_TUNNELS_PER_USER), so the targets apply to the first two; 50 × 20 and 10 × 100 go
# past that cap (raised for them) to show where a larger fan-out lands.
FLEETS = [(200, 5), (1000, 1), (50, 20), (10, 100)]
PHASE_A_S = 8.0
QUEUE_BYTES_QUICK = 256 * 1024  # quick mode: an eviction within its short phase B
PHASE_B_MAX_S = 30.0
FLEET_RATE = 200.0  # events/s over the fleet
STALL_RATE = 200.0  # events/s for the observer's user
CLIENT_LIFETIME_S = 1800.0  # the client process gives up after this, whatever happens


async def _recv(conn: Connection, timeout_s: float) -> Any:
    if not await asyncio.to_thread(conn.poll, timeout_s):
        raise TimeoutError("no message from the other process in time")
    return conn.recv()


# --- the client process ------------------------------------------------------------------------
class _Fleet:
    def __init__(self, ws_url: str, accounts: list[tuple[int, str, int]],
                 observer: tuple[int, str]) -> None:
        self.ws_url = ws_url
        self.accounts = accounts  # (user_id, token, tunnels)
        self.observer = observer
        # Receipts as flat arrays (user id, cursor, time): untracked by the garbage
        # collector, so the client's own full collections stay short.
        self.receipts = _Receipts()
        self.stalled = asyncio.Event()
        self.observer_close: int | None = None
        self.readers: list[asyncio.Task[None]] = []
        self.sockets: list[Any] = []
        self.fleet_sockets: list[Any] = []
        self.observer_task: asyncio.Task[None] | None = None
        self.observer_ws: Any = None
        self.deadline = time.monotonic() + CLIENT_LIFETIME_S

    async def _open(self, token: str, small_buffer: bool = False) -> Any:
        from websockets.asyncio.client import connect

        kwargs: dict[str, Any] = {"open_timeout": 30, "close_timeout": 2,
                                  "ping_interval": None, "max_queue": 16}
        if small_buffer:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, self._address())
            kwargs.update(sock=sock, max_queue=1)
        ws = await connect(f"{self.ws_url}?token={token}", **kwargs)
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ready.get("type") != "connection.ready":
            raise RuntimeError(f"unexpected first frame {ready}")
        return ws

    def _address(self) -> tuple[str, int]:
        host_port = self.ws_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        return host, int(port)

    async def _read(self, ws: Any, user_id: int) -> None:
        users, cursors, times = self.receipts.users, self.receipts.cursors, self.receipts.times
        with contextlib.suppress(Exception):
            async for raw in ws:
                now = time.time()
                if '"cursor"' in raw:
                    message = json.loads(raw)
                    if "cursor" in message:
                        users.append(user_id)
                        cursors.append(message["cursor"])
                        times.append(now)

    async def _ping(self, interval_s: float = 10.0) -> None:
        """A client heartbeat on every fleet tunnel (the server closes a silent one after
        WS_IDLE_TIMEOUT_S), spread evenly over the interval."""
        while time.monotonic() < self.deadline:
            sockets = list(self.fleet_sockets)
            pause = interval_s / max(len(sockets), 1)
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.send('{"type":"ping","data":{}}')
                await asyncio.sleep(pause)

    async def _observe(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        next_ping = time.monotonic() + 10
        try:
            while time.monotonic() < self.deadline:
                if self.stalled.is_set():
                    await asyncio.sleep(0.05)  # not reading: the socket's buffers fill up
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 1)
                if time.monotonic() > next_ping:
                    await ws.send('{"type":"ping","data":{}}')
                    next_ping = time.monotonic() + 10
        except ConnectionClosed as exc:
            # No close frame (the server dropped the connection): 1006, as a browser says.
            self.observer_close = exc.rcvd.code if exc.rcvd is not None else 1006

    async def open_all(self, concurrency: int = 50) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(user_id: int, token: str) -> None:
            async with gate:
                ws = await self._open(token)
            self.sockets.append(ws)
            self.fleet_sockets.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws, user_id)))

        jobs = []
        for user_id, token, tunnels in self.accounts:
            for _ in range(tunnels):
                jobs.append(one(user_id, token))
        await asyncio.gather(*jobs)
        self.readers.append(asyncio.create_task(self._ping()))
        await self.open_observer()

    async def open_observer(self) -> None:
        self.stalled.clear()
        self.observer_close = None
        ws = await self._open(self.observer[1], small_buffer=True)
        self.observer_task = asyncio.create_task(self._observe(ws))
        self.observer_ws = ws

    async def end_observer(self, evicted: bool) -> int | None:
        """After phase B: an evicted observer reads again until it sees the server's close
        (its code is reported); one that was not evicted is closed by the client."""
        self.stalled.clear()
        task = self.observer_task
        if task is not None:
            if evicted:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), 10)
            task.cancel()
        if self.observer_ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.observer_ws.close(), 5)
            self.observer_ws = None
        return self.observer_close

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        if self.observer_task is not None:
            self.observer_task.cancel()
        sockets = [*self.sockets, *([self.observer_ws] if self.observer_ws else [])]
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets),
                                              return_exceptions=True), 30)


class _Receipts:
    def __init__(self) -> None:
        self.users = array("q")
        self.cursors = array("q")
        self.times = array("d")

    def clear(self) -> None:
        for values in (self.users, self.cursors, self.times):
            del values[:]


def _latencies(receipts: _Receipts,
               stamps: dict[tuple[int, int], tuple[float, str]]) -> dict[str, Any]:
    by_phase: dict[str, list[float]] = {}
    for user_id, cursor, received in zip(receipts.users, receipts.cursors, receipts.times,
                                         strict=True):
        stamp = stamps.get((user_id, cursor))
        if stamp is not None:
            by_phase.setdefault(stamp[1], []).append((received - stamp[0]) * 1000)
    return {phase: {"count": len(values), "p50": percentile(values, 50),
                    "p99": percentile(values, 99), "max": max(values)}
            for phase, values in by_phase.items()}


async def _client(conn: Connection, ws_url: str, accounts: list[tuple[int, str, int]],
                  observer: tuple[int, str]) -> None:
    fleet = _Fleet(ws_url, accounts, observer)
    try:
        started = time.monotonic()
        await asyncio.wait_for(fleet.open_all(), 120)
        # The connections are long-lived: keep them out of this process's full collections.
        gc.collect()
        gc.freeze()
        conn.send(("ready", len(fleet.sockets), time.monotonic() - started))
        for _ in range(100):  # bounded: one iteration per command
            command = await _recv(conn, 300)
            if command[0] == "stall":
                fleet.stalled.set()
                conn.send(("stalled",))
            elif command[0] == "collect":
                close_code = await fleet.end_observer(command[2])
                stats = _latencies(fleet.receipts, command[1])
                fleet.receipts.clear()
                await fleet.open_observer()
                conn.send(("stats", stats, close_code))
            elif command[0] == "stop":
                break
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        await fleet.close()
        conn.close()


def client_process(conn: Connection, ws_url: str, accounts: list[tuple[int, str, int]],
                   observer: tuple[int, str]) -> None:
    """Entry point of the client process."""
    try:
        import uvloop
        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_client(conn, ws_url, accounts, observer))


# --- the server side ---------------------------------------------------------------------------
class _Stamps:
    """A bus subscriber: dispatch (≈ commit) time of every persisted event, by phase."""

    def __init__(self) -> None:
        self.phase = "warmup"
        self.stamps: dict[tuple[int, int], tuple[float, str]] = {}
        self.commit_lag: dict[str, list[float]] = {}  # phase → enqueue-to-dispatch, ms

    async def __call__(self, event: Any, registry: Any) -> None:
        if event.user_seq is not None:
            now = time.time()
            self.stamps[(event.user_id, event.user_seq)] = (now, self.phase)
            queued = event.payload.get("t")
            if queued is not None:
                self.commit_lag.setdefault(self.phase, []).append((now - queued) * 1000)

    def take(self, users: set[int]) -> dict[tuple[int, int], tuple[float, str]]:
        taken = {k: v for k, v in self.stamps.items() if k[0] in users}
        self.stamps.clear()
        return taken


class _GcPauses:
    """Full (generation 2) collections in the server process: with ~1,000 tunnels the heap
    holds a few hundred thousand objects, and each such pass stops the event loop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []  # (monotonic end, ms)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.monotonic()
        else:
            now = time.monotonic()
            self.pauses.append((now, (now - self._started) * 1000))

    def take(self, since: float) -> list[float]:
        taken = [ms for t, ms in self.pauses if t >= since]
        self.pauses.clear()
        return taken


class _LoopLag:
    """How late a 5 ms sleep wakes up in the server's event loop: what every tunnel waits."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag ms)
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for _ in range(10_000_000):  # bounded; cancelled at the end of the fleet
            started = time.monotonic()
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.samples.append((now, (now - started - 0.005) * 1000))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def take(self, since: float) -> list[float]:
        taken = [lag for t, lag in self.samples if t >= since]
        self.samples.clear()
        return taken

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def _settle(loop_lag: _LoopLag, gc_pauses: _GcPauses) -> None:
    """Between phases: a full collection, so that both phases start from the same collector
    state, then forget what the loop monitors saw meanwhile."""
    gc.collect()
    await asyncio.sleep(0.1)
    loop_lag.take(time.monotonic())
    gc_pauses.take(time.monotonic())


async def _emit_phase(bus: Any, seconds: float, fleet_users: list[int], fleet_rate: float,
                      observer_user: int, observer_rate: float,
                      until: Any = None) -> int:
    """Emit at steady rates for `seconds` (or until `until()` is true, past a minimum)."""
    from app.core.events import Event, EventTypes

    last: asyncio.Future[None] | None = None
    started = time.monotonic()
    fleet_i = observer_i = 0
    tick = 0.005
    while (elapsed := time.monotonic() - started) < seconds:
        if until is not None and until(elapsed):
            break
        events = []
        while fleet_i < elapsed * fleet_rate:
            events.append(Event(EventTypes.EXECUTION_NODE_STATUS,
                                {"node_id": "n", "status": "running", "i": fleet_i,
                                 "t": time.time()},
                                user_id=fleet_users[fleet_i % len(fleet_users)]))
            fleet_i += 1
        while observer_i < elapsed * observer_rate:
            # A token-stream delta (ephemeral: pushed, not logged), random so that the
            # tunnel's permessage-deflate cannot shrink it.
            events.append(Event(EventTypes.EXECUTION_NODE_STREAM,
                                {"node_id": "o", "delta": base64.b64encode(
                                    os.urandom(STALL_PAYLOAD * 3 // 4)).decode()},
                                user_id=observer_user))
            observer_i += 1
        for event in events:
            # Writes commit and dispatch in order: waiting for the last one is enough (and
            # keeping every future would load the garbage collector with this harness's
            # own objects).
            last = bus.enqueue([event])
        await asyncio.sleep(tick)
    if last is not None:
        await asyncio.wait_for(last, 30)
    return fleet_i


def _cpu_share(start: tuple[float, float, float], client_pid: int | None,
               ) -> tuple[float, float]:
    """(server, client) CPU use since `start`, as a fraction of one core."""
    wall = time.monotonic() - start[2]
    return ((cpu_seconds() - start[0]) / wall,
            (cpu_seconds(client_pid) - start[1]) / wall)


@dataclass
class FleetResult:
    users: int
    per_user: int
    rounds: list[dict[str, Any]]
    connect_s: float

    def med(self, phase: str, key: str) -> float:
        return median([r[phase].get(key, float("nan")) for r in self.rounds])

    @property
    def tunnels(self) -> int:
        return self.users * self.per_user


async def _measure_fleet(options: Options, url: str, users: int, per_user: int,
                         fleet_rate: float, observer_rate: float, queue_bytes: int,
                         ) -> FleetResult:
    """One fleet shape, on its own server (and users), for heavy_repeats rounds."""
    import uvicorn

    from app.core.bus import EventBus
    from app.core.config import Settings
    from app.core.security import create_token
    from app.core.ws import ConnectionManager
    from app.main import create_app
    from scripts.benchmarks.http_runs import free_port

    phase_a_s, phase_b_max_s = (1.0, 4.0) if options.quick else (PHASE_A_S, PHASE_B_MAX_S)
    store = Store(url)
    ids = await store.add_users(users + 1, prefix="tunnel")
    await store.close()
    fleet_users, observer_user = ids[:users], ids[users]
    settings = Settings(_env_file=None, DATABASE_URL=url, JWT_SECRET=JWT_SECRET,
                        LOG_LEVEL="WARNING", WS_MAX_TUNNELS_PER_USER=max(per_user, 5),
                        WS_SEND_QUEUE_BYTES=queue_bytes)

    def token(user_id: int) -> str:
        return create_token(secret=JWT_SECRET, subject=user_id, role="user", typ="access",
                            lifetime=timedelta(hours=2))[0]

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        ws_ping_interval=None, access_log=False))
    serve = asyncio.create_task(server.serve())
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = None
    loop_lag: _LoopLag | None = None
    gc_pauses: _GcPauses | None = None
    rounds: list[dict[str, Any]] = []
    connect_s = float("nan")
    try:
        for _ in range(600):
            if server.started or serve.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        bus: EventBus = app.state.registry.get(EventBus)
        connections: ConnectionManager = app.state.registry.get(ConnectionManager)
        stamps = _Stamps()
        bus.add_subscriber(("*",), stamps)
        loop_lag = _LoopLag()
        loop_lag.start()
        gc_pauses = _GcPauses()
        gc.callbacks.append(gc_pauses)
        client = ctx.Process(target=client_process, args=(
            child, f"ws://127.0.0.1:{port}/api/v1/ws",
            [(u, token(u), per_user) for u in fleet_users], (observer_user, token(observer_user))),
            daemon=True)
        client.start()
        process = client
        ready = await _recv(parent, 180)
        if ready[0] != "ready":
            raise RuntimeError(f"client process: {ready}")
        connect_s = ready[2]
        progress(f"  tunnels {users} × {per_user}: {ready[1]} open in {connect_s:.1f} s "
                 f"(server holds {connections.count()})")
        if options.warmup:  # a second of load, not measured
            await _emit_phase(bus, 1.0, fleet_users, fleet_rate, observer_user, observer_rate)
        for round_no in range(options.heavy_repeats):
            await asyncio.sleep(0.5)
            stamps.take(set())
            await _settle(loop_lag, gc_pauses)
            stamps.phase = "A"
            cpu = (cpu_seconds(), cpu_seconds(client.pid), time.monotonic())
            sent_a = await _emit_phase(bus, phase_a_s, fleet_users, fleet_rate, observer_user,
                                       observer_rate)
            cpu_a = _cpu_share(cpu, client.pid)
            lag_a = loop_lag.take(cpu[2])
            gc_a = gc_pauses.take(cpu[2])
            await asyncio.sleep(0.3)
            parent.send(("stall",))
            await _recv(parent, 30)
            await _settle(loop_lag, gc_pauses)
            stamps.phase = "B"
            cpu = (cpu_seconds(), cpu_seconds(client.pid), time.monotonic())
            evicted: list[float] = []

            def gone(elapsed: float, evicted: list[float] = evicted) -> bool:
                if not evicted and connections.count(observer_user) == 0:
                    evicted.append(elapsed)
                # Run B at least as long as A, and on for a while after the eviction.
                return elapsed >= phase_a_s and bool(evicted) and \
                    elapsed >= evicted[0] + min(phase_a_s, 3.0)

            sent_b = await _emit_phase(bus, phase_b_max_s, fleet_users, fleet_rate,
                                       observer_user, observer_rate, until=gone)
            cpu_b = _cpu_share(cpu, client.pid)
            b_started = cpu[2]
            lag_samples = list(loop_lag.samples)
            lag_b = loop_lag.take(b_started)
            gc_b = gc_pauses.take(b_started)
            if evicted and lag_b:
                worst_t, worst = max(lag_samples, key=lambda s: s[1])
                progress(f"    phase B: worst loop lag {worst:.0f} ms at "
                         f"{worst_t - b_started:.2f} s; eviction at {evicted[0]:.2f} s")
            await asyncio.sleep(0.5)
            stamps.phase = "after"
            parent.send(("collect", stamps.take(set(fleet_users)), bool(evicted)))
            reply = await _recv(parent, 120)
            if reply[0] != "stats":
                raise RuntimeError(f"client process: {reply}")
            stats, close_code = reply[1], reply[2]
            lag = {phase: stamps.commit_lag.pop(phase, []) for phase in ("A", "B")}
            stamps.commit_lag.clear()
            for phase, share, loop, pauses in (("A", cpu_a, lag_a, gc_a),
                                               ("B", cpu_b, lag_b, gc_b)):
                stats.setdefault(phase, {}).update(
                    server_cpu=share[0], client_cpu=share[1],
                    lag50=percentile(lag[phase], 50), lag99=percentile(lag[phase], 99),
                    loop99=percentile(loop, 99), loop_max=max(loop, default=float("nan")),
                    gc_count=len(pauses), gc_max=max(pauses, default=0.0))
            result = {"A": stats["A"], "B": stats["B"],
                      "evicted_s": evicted[0] if evicted else float("nan"),
                      "close_code": close_code, "expected_a": sent_a * per_user,
                      "expected_b": sent_b * per_user}
            rounds.append(result)
            a, b = result["A"], result["B"]
            progress(f"  tunnels {users} × {per_user} round {round_no}: A p50 "
                     f"{a.get('p50', 0):.1f} p99 {a.get('p99', 0):.1f} ms "
                     f"({a.get('count', 0)}/{result['expected_a']}); B p50 "
                     f"{b.get('p50', 0):.1f} p99 {b.get('p99', 0):.1f} ms "
                     f"({b.get('count', 0)}/{result['expected_b']}); evicted after "
                     f"{result['evicted_s']:.1f} s, close {close_code}")
            # Wait (bounded) until the observer's new tunnel is registered.
            for _ in range(200):
                if connections.count(observer_user) > 0:
                    break
                await asyncio.sleep(0.05)
        parent.send(("stop",))
    finally:
        if gc_pauses is not None and gc_pauses in gc.callbacks:
            gc.callbacks.remove(gc_pauses)
        if loop_lag is not None:
            loop_lag.stop()
        if process is not None:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serve, 30)
    return FleetResult(users, per_user, rounds, connect_s)


async def measure(options: Options, dbs: Databases) -> Section:
    from app.core.config import Settings

    section = Section("tunnels", "5. Tunnel fan-out")
    if not await dbs.pg_available():
        section.skipped = f"PostgreSQL unreachable at {options.pg_url}"
        return section
    fleets = [(2, 5)] if options.quick else FLEETS
    fleet_rate, observer_rate = (50.0, 200.0) if options.quick else (FLEET_RATE, STALL_RATE)
    # A stalled socket is evicted once the kernel's buffers (~3 MB on loopback) and its send
    # queue (bounded in bytes) are full: with the default, a few seconds of the observer's load.
    default_queue = Settings.model_fields["WS_SEND_QUEUE_BYTES"].default
    default_cap = Settings.model_fields["WS_MAX_TUNNELS_PER_USER"].default
    queue_bytes = QUEUE_BYTES_QUICK if options.quick else default_queue
    results = []
    for i, (users, per_user) in enumerate(fleets):
        url = await dbs.postgres(f"tunnels{i}")
        results.append(await _measure_fleet(options, url, users, per_user, fleet_rate,
                                            observer_rate, queue_bytes))

    section.headers = ["fleet", "phase", "fan-out", "deliveries/s", "p50 ms", "p99 ms",
                       "max ms", "emit→commit p50 / p99 ms", "server loop lag p99 / max ms",
                       "full GCs (max ms)", "server CPU", "client CPU", "eviction",
                       "every event delivered"]
    for r in results:
        delivered = all(x["A"].get("count") == x["expected_a"] and
                        x["B"].get("count") == x["expected_b"] for x in r.rounds)
        evictions = [x["evicted_s"] for x in r.rounds]
        codes = ", ".join(sorted({str(x["close_code"]) for x in r.rounds}))
        all_evicted = all(e == e for e in evictions)
        for phase, label in (("A", "A: all reading"), ("B", "B: one socket stalled")):
            section.rows.append([
                f"{r.users:,} users × {r.per_user:,}", label, f"{r.per_user:,}",
                fmt(fleet_rate * r.per_user, 0), fmt(r.med(phase, "p50"), 2),
                fmt(r.med(phase, "p99"), 2), fmt(r.med(phase, "max"), 1),
                f"{fmt(r.med(phase, 'lag50'))} / {fmt(r.med(phase, 'lag99'))}",
                f"{fmt(r.med(phase, 'loop99'))} / {fmt(r.med(phase, 'loop_max'))}",
                f"{fmt(r.med(phase, 'gc_count'), 0)} ({fmt(r.med(phase, 'gc_max'), 0)})",
                f"{r.med(phase, 'server_cpu') * 100:.0f}%",
                f"{r.med(phase, 'client_cpu') * 100:.0f}%",
                (f"after {fmt(median(evictions))} s, close {codes}" if all_evicted
                 else "**not evicted**") if phase == "B" else "",
                "yes" if delivered else "**no**"])
        p50, p99, p99_b = r.med("A", "p50"), r.med("A", "p99"), r.med("B", "p99")
        where = f"{r.tunnels:,} tunnels = {r.users:,} users × {r.per_user:,}"
        if r.per_user > default_cap:
            section.targets.append((f"(beyond the contract's {default_cap} tunnels per user, "
                                    f"no target) {where}", f"p50 {p50:.1f} ms, p99 {p99:.1f} "
                                    f"ms; stalled socket evicted: {all_evicted}", None))
            continue
        section.targets.append((f"tunnel p50 ≤ 10 ms, p99 ≤ 50 ms at {fleet_rate:g} events/s "
                                f"({where})", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                                p50 <= 10 and p99 <= 50))
        section.targets.append((f"stalled socket evicted, others' p99 not raised ({where})",
                                f"evicted after {fmt(median(evictions))} s; p99 {p99:.1f} → "
                                f"{p99_b:.1f} ms",
                                all_evicted and p99_b <= max(50.0, p99 * 1.5)))
    section.notes += [
        f"Each fleet: 1,000 tunnels (quick mode: 10), {fleet_rate:g} persisted events/s "
        "round-robin over its users, so each event goes to `fan-out` tunnels of its user. "
        f"Its own server process and database. One observer user gets {observer_rate:g} "
        f"`execution.node.stream` deltas/s (ephemeral, not logged) of {STALL_PAYLOAD} random "
        "bytes (base64) in both phases, so the load is equal; its socket has a 4 KB receive "
        f"buffer. `WS_SEND_QUEUE_BYTES={queue_bytes}` (the default is {default_queue}), "
        "default heartbeat settings, "
        f"`WS_MAX_TUNNELS_PER_USER` at its default ({default_cap}) or raised to the fan-out "
        "where it is larger.",
        f"Latency = receipt in the client process − dispatch right after commit. Median of "
        f"{options.heavy_repeats} rounds per fleet: phase A "
        f"{1.0 if options.quick else PHASE_A_S:g} s; phase B until the eviction plus up to "
        "3 s (bounded). The client process sends a `ping` every ~10 s per tunnel, as a "
        "browser client would; opening the tunnels took "
        + ", ".join(f"{r.connect_s:.1f} s" for r in results) + ".",
        "emit→commit: from `bus.enqueue` to dispatch (the group-commit writer's latency), "
        "not part of the tunnel latency. Server loop lag: how late a 5 ms sleep in the "
        "server's event loop wakes up (every tunnel's sender waits on that loop). Server CPU "
        "includes the emitter and the log writer (same process); PostgreSQL's own CPU is "
        "not counted. Full GCs: generation-2 collections in the server process during the "
        "phase (median count per round, and the longest): each stops the event loop.",
        "The client process freezes its heap once the tunnels are open and keeps receipts in "
        "flat arrays, so its own garbage collector adds no latency to the figures.",
        "Eviction = the server dropped the observer's tunnel from its ConnectionManager "
        "(send queue overflow); the close code is what the observer read when it resumed "
        "(1006: the connection ended without a close frame).",
    ]
    return section
