"""The run queue of queue mode (DESIGN.md §10): a small interface, and pgqueuer behind it.

`RunQueue` is all the execution module asks of a queue: `enqueue` a run, `cancel` one, and
`serve` a `QueueConsumer` (a worker) with the runs it has room for. `PgRunQueue` implements it
on pgqueuer (pinned in pyproject.toml), on the PostgreSQL the app already uses:

* `enqueue` runs on the request's own transaction (the asyncpg connection under its session),
  so the run row and its job commit together or not at all: no crash can leave a queued run
  without a job, or a job without its run.
* `serve` picks jobs with pgqueuer's query (FOR UPDATE SKIP LOCKED, so two workers never
  pick one job), has the consumer claim their runs and acks the jobs (pgqueuer moves them to
  its log), all in one transaction: a worker that dies before that commits leaves the jobs
  queued. (A job left `picked` by anything else is handed to another worker by pgqueuer once
  its heartbeat is `RUN_LEASE_S` old.) It picks only as many jobs as the consumer has free
  slots and waits on pgqueuer's own NOTIFY of new jobs (with a poll every `RUN_POLL_S`).
  Each pick waits `RUN_PICKUP_LINGER_MS` first, so that under load the jobs that arrived
  meanwhile share one transaction (a run's pick-up costs that much more latency), except
  while jobs are waiting for slots: then a freed slot picks at once.
* `serve` also prunes pgqueuer's log (`pgqueuer_log`, two rows a job, which pgqueuer keeps
  for ever) of rows older than `QUEUE_LOG_RETENTION_H`, every minute, one worker at a time.
* `cancel` raises the run's cancel flag and sends `cascade_cancel` in the caller's
  transaction; `serve` hands the notification to the consumer, which reads the flag at its
  next lease renewal too (a notification is lost while the listener is down).

pgqueuer's own QueueManager loop is not used: a run outlives its job (the job is acked at the
claim and the run's lease takes over), and a lost queue connection is just a failed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.models import Job
from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
from pgqueuer.ports.repository import EntrypointExecutionParameter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.db.bulk import driver_connection, pooled_driver
from app.core.db.listener import PgListener

logger = logging.getLogger("cascade.queue")

ENTRYPOINT = "cascade.run"
CANCEL_CHANNEL = "cascade_cancel"
# pgqueuer NOTIFYs on this channel whenever its job table changes: workers wake on it.
JOBS_CHANNEL = str(DBSettings().channel)
_ENTRYPOINTS = {QueueEntrypoint(ENTRYPOINT): EntrypointExecutionParameter(concurrency_limit=0)}
_PRUNE_EVERY_S = 60.0
_PRUNE_BATCH = 10_000  # rows one prune statement deletes at most (short transactions)
_PRUNE_LOCK_CLASS = 7_262_346  # the advisory lock's first key: one worker prunes at a time
_PRUNE_LOG = f"""
WITH turn AS (SELECT pg_try_advisory_xact_lock({_PRUNE_LOCK_CLASS}, 0) AS ours),
     old AS (SELECT id FROM pgqueuer_log
              WHERE created < now() - make_interval(secs => $1) AND (SELECT ours FROM turn)
              ORDER BY created LIMIT $2)
DELETE FROM pgqueuer_log WHERE id IN (SELECT id FROM old)
"""


class QueueConsumer(Protocol):
    """The worker's side of `RunQueue.serve`."""

    def free_slots(self) -> int: ...

    async def slot_freed(self) -> None:
        """Return once a held run has ended (called when `free_slots()` is 0)."""

    async def claim(self, driver: Any, run_ids: list[uuid.UUID]) -> Sequence[Any]:
        """Claim the runs of picked jobs, on the pick's transaction (asyncpg connection);
        the claimed rows go to `launch` once that transaction has committed."""

    def launch(self, claimed: Sequence[Any]) -> None: ...

    def cancel_requested(self, run_id: uuid.UUID) -> None: ...

    async def reconnected(self) -> None:
        """The notification connection is (back) up: notifications may have been missed."""


class RunQueue(Protocol):
    async def enqueue(self, session: AsyncSession, run_id: uuid.UUID) -> None: ...

    async def cancel(self, session: AsyncSession, run_id: uuid.UUID) -> None: ...

    async def serve(self, consumer: QueueConsumer) -> None:
        """Feed `consumer` until cancelled."""


class PgRunQueue:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self._settings = settings
        self._engine = engine
        self.manager_id = uuid.uuid4()  # pgqueuer's id for this worker's picks
        self._wake = asyncio.Event()
        self.prune_batch = _PRUNE_BATCH

    # --- the API's side (on the request's transaction) ---------------------------------------
    async def enqueue(self, session: AsyncSession, run_id: uuid.UUID) -> None:
        await _queries(await driver_connection(session)).enqueue(ENTRYPOINT, run_id.bytes)

    async def cancel(self, session: AsyncSession, run_id: uuid.UUID) -> None:
        driver = await driver_connection(session)
        await driver.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", run_id)
        await driver.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(run_id))

    # --- the worker's side -------------------------------------------------------------------
    async def serve(self, consumer: QueueConsumer) -> None:
        def on_jobs_changed(payload: str) -> None:
            # pgqueuer's trigger reports every change of its job table; only an insert brings
            # a job to take (a pick or an ack woke every worker for nothing: a dequeue each).
            if '"insert"' in payload:
                self._wake.set()

        def on_cancel(payload: str) -> None:
            with contextlib.suppress(ValueError):
                consumer.cancel_requested(uuid.UUID(payload))

        async def on_connect() -> None:
            self._wake.set()  # jobs may have arrived while the listener was away
            await consumer.reconnected()

        listener = PgListener(
            self._settings.DATABASE_URL,
            {JOBS_CHANNEL: on_jobs_changed, CANCEL_CHANNEL: on_cancel},
            name=f"cascade-worker-{os.getpid()}", on_connect=on_connect)
        listener.start()
        pruner = asyncio.create_task(self._prune_loop(), name="queue-log-prune")
        try:
            await self._pick_loop(consumer)
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await listener.stop()

    async def prune_log(self) -> int:
        """Delete pgqueuer's log rows older than QUEUE_LOG_RETENTION_H, batch after batch
        until one comes back short (a busy queue logs more than a batch a minute, and each
        statement stays short); nothing when another worker is pruning. Returns the rows
        deleted."""
        total = 0
        async with pooled_driver(self._engine) as driver:
            while True:
                status = await driver.execute(
                    _PRUNE_LOG, self._settings.QUEUE_LOG_RETENTION_H * 3600, self.prune_batch)
                deleted = int(status.rpartition(" ")[2])
                total += deleted
                if deleted < self.prune_batch:
                    return total

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(_PRUNE_EVERY_S)
            try:
                deleted = await self.prune_log()
            except Exception as exc:  # the database is away: the next round tries again
                logger.warning("pruning the queue log failed: %s", exc)
                continue
            if deleted:
                logger.info("pruned %d queue log row(s)", deleted)

    async def _pick_loop(self, consumer: QueueConsumer) -> None:
        poll = self._settings.RUN_POLL_S
        linger = self._settings.RUN_PICKUP_LINGER_MS / 1000
        backlog = False  # the last pick filled every free slot: more jobs may be waiting
        while True:
            if consumer.free_slots() <= 0:
                await consumer.slot_freed()
                continue
            if linger and not backlog:
                # Let jobs gather before picking: picked at once, each job was taken in a
                # transaction of its own, and each run's events committed apart from its
                # neighbours' — even an idle worker, as under load jobs arrive one request
                # at a time. Not when jobs are already waiting (the last pick filled every
                # free slot): a slot that waited then was a slot idle for nothing (part 9 of
                # scripts/bench: 4-11% more runs/s, pick-up p50 54 -> 38 ms, with 16 slots).
                await asyncio.sleep(linger)
            free = consumer.free_slots()
            self._wake.clear()
            try:
                taken = await self._take(consumer, free)
            except Exception as exc:  # the database is away: the next poll tries again
                logger.warning("dequeue failed: %s", exc)
                taken = 0
            backlog = taken >= free
            if not backlog:
                # The queue had no more: wait for a new job (a wake-up that came during the
                # take is still set), instead of a dequeue that would find nothing.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), poll)

    async def _take(self, consumer: QueueConsumer, n: int) -> int:
        """Pick up to `n` jobs, claim their runs and ack the jobs, in one transaction (one
        commit for the lot; their rows are only locked until then, SKIP LOCKED keeping other
        workers off them)."""
        async with pooled_driver(self._engine) as driver, driver.transaction():
            queries = _queries(driver)
            jobs = await queries.dequeue(
                batch_size=n, entrypoints=_ENTRYPOINTS,
                queue_manager_id=QueueManagerId(self.manager_id),
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=self._settings.RUN_LEASE_S))
            if not jobs:
                return 0
            run_ids = [run_id for job in jobs if (run_id := _run_id_of(job))]
            claimed = await consumer.claim(driver, run_ids)
            await queries.log_jobs([(job, "successful", None) for job in jobs])
        consumer.launch(claimed)
        if len(run_ids) < len(jobs):
            # Runs the consumer did not claim it reports itself; these carried no run id.
            logger.warning("%d job(s) without a run id acked", len(jobs) - len(run_ids))
        return len(jobs)


def _queries(driver: Any) -> Queries:
    """pgqueuer's queries on one asyncpg connection (in whatever transaction it is in)."""
    return Queries(AsyncpgDriver(driver))


def _run_id_of(job: Job) -> uuid.UUID | None:
    payload = job.payload
    return uuid.UUID(bytes=payload) if payload is not None and len(payload) == 16 else None
