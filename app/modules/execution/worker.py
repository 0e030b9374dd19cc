"""A queue-mode worker: takes runs off the queue, holds them by lease, runs them (§10).

Per run: pick its job (pgqueuer) → claim the run in one transaction with the job's ack
(`attempt` + 1 is this worker's fencing token, `lease_expires_at` its lease) → run it with
the Runner, every event write fenced by the attempt.

One poll loop, every `RUN_POLL_S`, does the rest with a statement or two each:
* renews the leases of the runs it holds, and reads their cancel flags on the way (the
  fallback for a cancel whose NOTIFY it missed); a run whose renewal matched no row was taken
  over: its task is abandoned, and its writes were already being refused by the log;
* closes runs whose lease ran out (their worker died, or froze past it): the attempt is raised
  (fencing the old holder out), the unfinished nodes become `cancelled` with reason
  `worker_lost` and the run ends with one `execution.failed {error: {code: "worker_lost"}}`,
  all in one transaction under the run's row lock, so it happens once whoever tries;
* records this worker in `workers` (GET /health/ready counts the live ones).

Picking jobs is the run queue's (`RunQueue.serve`, app/modules/execution/queue.py); this
class is its consumer: it claims the picked runs, launches them and cancels one at once when
the queue reports a cancel notification (`cascade_cancel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.bus import EventBus
from app.core.config import PROVIDER_IDS, Settings
from app.core.db.base import utcnow
from app.core.db.bulk import driver_connection, pooled_driver
from app.core.di import Registry
from app.core.events import Event, EventTypes
from app.core.json_codec import loads
from app.modules.execution.graph import parse_graph
from app.modules.execution.manager import ExecutionManager
from app.modules.execution.models import NodeStatus, NodeUpdate, RunStatus, RunUpdate
from app.modules.execution.plan import RunPlan, build_plan
from app.modules.execution.providers.registry import provider_has_key
from app.modules.execution.runner import Runner

logger = logging.getLogger("cascade.worker")

_CLAIM = """
UPDATE runs SET attempt = attempt + 1, worker_id = $2,
       lease_expires_at = now() + make_interval(secs => $3)
 WHERE id = ANY($1::uuid[]) AND status = 'queued' AND lease_expires_at IS NULL
RETURNING id, attempt, user_id, project_id, flow_id, provider_id, graph, trigger_node_id,
          cached_outputs
"""
_RENEW = """
UPDATE runs AS r SET lease_expires_at = now() + make_interval(secs => $3)
  FROM unnest($1::uuid[], $2::int[]) AS held(id, attempt)
 WHERE r.id = held.id AND r.attempt = held.attempt
RETURNING r.id, r.cancel_requested
"""
_EXPIRED = """
SELECT id FROM runs
 WHERE lease_expires_at < now() AND status IN ('queued', 'running')
 ORDER BY lease_expires_at LIMIT 20
"""
_LOCK_EXPIRED = """
SELECT user_id, project_id, flow_id FROM runs
 WHERE id = $1 AND lease_expires_at < now() AND status IN ('queued', 'running')
   FOR UPDATE SKIP LOCKED
"""
_TAKE_OVER = """
UPDATE runs SET attempt = attempt + 1, worker_id = $2, lease_expires_at = NULL
 WHERE id = $1 RETURNING attempt
"""
_OPEN_NODES = """
SELECT node_id FROM run_nodes WHERE run_id = $1 AND status IN ('pending', 'running')
 ORDER BY level, node_id
"""
_SEEN = """
INSERT INTO workers (id, host, pid, concurrency, running, started_at, seen_at)
VALUES ($1, $2, $3, $4, $5, now(), now())
ON CONFLICT (id) DO UPDATE SET running = EXCLUDED.running, seen_at = now()
"""
WORKER_LOST = {"code": "worker_lost",
               "message": "the worker running this run stopped before it ended"}


@dataclass
class _Held:
    attempt: int
    runner: Runner
    task: asyncio.Task[RunStatus]


class RunWorker:
    """Holds runs taken off the queue: a `QueueConsumer` of `RunQueue.serve`."""

    def __init__(self, registry: Registry, execution: ExecutionManager) -> None:
        self._settings = registry.get(Settings)
        self._bus = registry.get(EventBus)
        self._sessionmaker: async_sessionmaker[AsyncSession] = registry.get(async_sessionmaker)
        self._engine = self._sessionmaker.kw["bind"]
        self._execution = execution
        self._queue = execution.queue
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: dict[uuid.UUID, _Held] = {}
        self._slot_free = asyncio.Event()

    # --- serving -----------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        self._build_providers()
        logger.info("worker %s serving (concurrency %d, lease %.1f s)", self.id,
                    self._settings.WORKER_CONCURRENCY, self._settings.RUN_LEASE_S)
        tasks = [asyncio.create_task(self._queue.serve(self), name="worker-queue"),
                 asyncio.create_task(self._poll_loop(), name="worker-poll")]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._stop_runs()

    def _build_providers(self) -> None:
        """Build every provider that has a key before taking runs. A provider's SDK is
        imported when it is first built (seconds for `openai` or `anthropic` on a busy
        machine), and that import blocks the event loop: done at a run's launch, right after
        its claim, it stalled the lease renewals until another worker closed the fresh run
        as lost."""
        for provider_id in PROVIDER_IDS:
            if provider_has_key(provider_id, self._settings):
                self._execution.provider_for(provider_id)

    async def _stop_runs(self) -> None:
        """On shutdown the held runs are cancelled and recorded as such (a clean stop is
        no lost worker)."""
        held = list(self._held.values())
        for run in held:
            run.task.cancel()
        if held:
            await asyncio.wait([run.task for run in held], timeout=10)

    # --- the queue's consumer ----------------------------------------------------------------
    def free_slots(self) -> int:
        return self._settings.WORKER_CONCURRENCY - len(self._held)

    async def slot_freed(self) -> None:
        self._slot_free.clear()
        if self.free_slots() <= 0:
            await self._slot_free.wait()

    async def reconnected(self) -> None:
        await self._poll_once()  # cancels sent while the notifications were away

    def cancel_requested(self, run_id: uuid.UUID) -> None:
        held = self._held.get(run_id)
        if held is not None:
            logger.info("cancelling run %s (cancel notification)", run_id)
            held.task.cancel()

    async def claim(self, driver: Any, run_ids: list[uuid.UUID]) -> Sequence[Any]:
        """`attempt` + 1 is this worker's fencing token for the run, `lease_expires_at` its
        lease. A run that is not queued (cancelled before any worker took it, or a stale job
        of a run another worker holds) is not claimed."""
        claimed: list[Any] = await driver.fetch(_CLAIM, run_ids, self.id,
                                                 self._settings.RUN_LEASE_S)
        if len(claimed) < len(run_ids):
            missed = set(run_ids) - {row["id"] for row in claimed}
            logger.info("worker %s: runs not waiting for a worker: %s", self.id,
                        ", ".join(sorted(map(str, missed))))
        return claimed

    def launch(self, claimed: Sequence[Any]) -> None:
        for row in claimed:
            self._launch(row["id"], row)

    def _launch(self, run_id: uuid.UUID, row: Any) -> None:
        execution = self._execution
        plan = self._plan(run_id, row)
        runner = Runner(plan, bus=self._bus, provider=execution.provider_for(plan.provider_id),
                        limits=execution.limits(), fence=row["attempt"])
        task = asyncio.create_task(runner.run(), name=f"run-{run_id}")
        self._held[run_id] = _Held(row["attempt"], runner, task)
        logger.info("worker %s picked up run %s (attempt %d)", self.id, run_id, row["attempt"])

        def forget(_: asyncio.Task[RunStatus]) -> None:
            held = self._held.get(run_id)
            if held is not None and held.task is task:
                del self._held[run_id]
            self._slot_free.set()
            if not task.cancelled() and task.exception() is not None:
                # A run fenced out mid-write cannot record its own end either; the worker
                # that took it over did. Said here once, instead of asyncio's "exception
                # was never retrieved" at garbage collection.
                logger.warning("run %s (attempt %d) stopped on this worker: %r", run_id,
                               row["attempt"], task.exception())

        task.add_done_callback(forget)

    def _plan(self, run_id: uuid.UUID, row: Any) -> RunPlan:
        raw = _json(row["graph"])
        return build_plan(
            run_id=run_id, user_id=row["user_id"], project_id=row["project_id"],
            flow_id=row["flow_id"], provider_id=row["provider_id"], graph=parse_graph(raw),
            registry=self._execution.executors, trigger_node_id=row["trigger_node_id"],
            available_outputs=_json(row["cached_outputs"]) or {})

    # --- the poll: leases, cancel flags, lost runs, liveness ---------------------------------
    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.RUN_POLL_S)
            try:
                await self._poll_once()
            except Exception as exc:
                logger.warning("worker %s: poll failed: %s", self.id, exc)

    async def _poll_once(self) -> None:
        async with pooled_driver(self._engine) as driver:
            await self._renew(driver)
            await driver.execute(_SEEN, self.id, socket.gethostname(), os.getpid(),
                                 self._settings.WORKER_CONCURRENCY, len(self._held))
            for row in await driver.fetch(_EXPIRED):
                await self.close_lost(row["id"])

    async def _renew(self, driver: Any) -> None:
        held = dict(self._held)
        if not held:
            return
        rows = await driver.fetch(_RENEW, list(held), [h.attempt for h in held.values()],
                                  self._settings.RUN_LEASE_S)
        renewed = {row["id"]: row["cancel_requested"] for row in rows}
        for run_id, run in held.items():
            if run_id not in renewed:
                logger.warning("worker %s lost the lease of run %s (attempt %d): another "
                               "worker took it over", self.id, run_id, run.attempt)
                run.runner.abandon()
                run.task.cancel()
            elif renewed[run_id] and not run.task.done():
                logger.info("cancelling run %s (cancel flag)", run_id)
                run.task.cancel()

    async def close_lost(self, run_id: uuid.UUID) -> bool:
        """Close a run whose lease ran out; False when it is not (or no longer) one."""
        async with self._sessionmaker() as session:
            driver = await driver_connection(session)
            run = await driver.fetchrow(_LOCK_EXPIRED, run_id)
            if run is None:
                await session.rollback()
                return False
            attempt = await driver.fetchval(_TAKE_OVER, run_id, self.id)
            open_nodes = [row["node_id"] for row in await driver.fetch(_OPEN_NODES, run_id)]
            now = utcnow()
            scope = {"user_id": run["user_id"], "project_id": run["project_id"],
                     "run_id": run_id, "flow_id": run["flow_id"], "fence": attempt}
            events = [Event(EventTypes.EXECUTION_NODE_STATUS,
                            {"node_id": node_id, "status": NodeStatus.CANCELLED.value,
                             "reason": "worker_lost"},
                            state=[NodeUpdate(run_id, node_id,
                                              {"status": NodeStatus.CANCELLED.value,
                                               "finished_at": now})], **scope)
                      for node_id in open_nodes]
            events.append(Event(EventTypes.EXECUTION_FAILED, {"error": WORKER_LOST},
                                state=[RunUpdate(run_id, {"status": RunStatus.FAILED.value,
                                                          "error": WORKER_LOST,
                                                          "finished_at": now})], **scope))
            await self._bus.emit_in(session, *events)
            await session.commit()
            await self._bus.dispatch_committed(session)
        logger.warning("worker %s closed run %s: its worker was lost (%d node(s) cancelled)",
                       self.id, run_id, len(open_nodes))
        return True


def _json(value: Any) -> Any:
    """asyncpg hands json/jsonb columns over as text unless a codec is set."""
    if isinstance(value, str):
        return loads(value)
    return value
