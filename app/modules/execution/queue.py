"""The run queue of queue mode (DESIGN.md §10): pgqueuer behind the few calls Cascade makes.

* `enqueue` runs on the request's own transaction (the asyncpg connection under its session),
  so the run row and its job commit together or not at all: no crash can leave a queued run
  without a job, or a job without its run.
* `dequeue` picks jobs with pgqueuer's query (FOR UPDATE SKIP LOCKED, so two workers never
  pick one job; a job whose picker stopped heartbeating for `RUN_LEASE_S` is picked again).
* `ack` deletes a job into pgqueuer's log. The worker picks, claims the run and acks in one
  transaction (app/modules/execution/worker.py): a worker that dies before that commits
  leaves the job queued. (A job left `picked` by anything else is handed to another worker
  by pgqueuer once its heartbeat is `RUN_LEASE_S` old.)
* `request_cancel` raises the run's cancel flag and sends `cascade_cancel` in the caller's
  transaction; the worker holding the run hears it, or reads the flag at its next poll.

The worker calls `dequeue` itself instead of pgqueuer's QueueManager loop: a run outlives its
job (the job is acked at the claim and the run's lease takes over), the worker takes only as
many jobs as it has free slots, and a lost queue connection is just a failed poll, retried.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.domain.models import Job
from pgqueuer.domain.settings import DBSettings
from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
from pgqueuer.ports.repository import EntrypointExecutionParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db.bulk import driver_connection

ENTRYPOINT = "cascade.run"
CANCEL_CHANNEL = "cascade_cancel"
# pgqueuer NOTIFYs on this channel whenever its job table changes: workers wake on it.
JOBS_CHANNEL = str(DBSettings().channel)
_ENTRYPOINTS = {QueueEntrypoint(ENTRYPOINT): EntrypointExecutionParameter(concurrency_limit=0)}


def queries(driver: Any) -> Queries:
    """pgqueuer's queries on one asyncpg connection (in whatever transaction it is in)."""
    return Queries(AsyncpgDriver(driver))


async def enqueue(session: AsyncSession, run_id: uuid.UUID) -> None:
    await queries(await driver_connection(session)).enqueue(ENTRYPOINT, run_id.bytes)


async def request_cancel(session: AsyncSession, run_id: uuid.UUID) -> None:
    driver = await driver_connection(session)
    await driver.execute("UPDATE runs SET cancel_requested = true WHERE id = $1", run_id)
    await driver.execute("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, str(run_id))


async def dequeue(driver: Any, n: int, worker: uuid.UUID, lease_s: float) -> list[Job]:
    return await queries(driver).dequeue(
        batch_size=n, entrypoints=_ENTRYPOINTS, queue_manager_id=QueueManagerId(worker),
        global_concurrency_limit=None, heartbeat_timeout=timedelta(seconds=lease_s))


async def ack(driver: Any, jobs: list[Job]) -> None:
    if jobs:
        await queries(driver).log_jobs([(job, "successful", None) for job in jobs])


def run_id_of(job: Job) -> uuid.UUID | None:
    payload = job.payload
    return uuid.UUID(bytes=payload) if payload is not None and len(payload) == 16 else None
