"""The run queue (app/modules/execution/queue.py) on a real PostgreSQL, with pgqueuer's real
tables and notifications: what `RunQueue` promises its consumer, the worker.

The consumer here is a plain recorder of what the queue hands it (the worker's own claim,
leases and runs are tested with real processes in tests/test_scale_out.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.core.db.engine import create_engine
from app.modules.execution.queue import PgRunQueue
from tests.conftest import make_settings

pytestmark = pytest.mark.parametrize("backend", ["postgres"])


class Recorder:
    """A consumer with `slots` places that claims every run it is offered."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.held: set[uuid.UUID] = set()
        self.claims: list[list[uuid.UUID]] = []
        self.cancels: list[uuid.UUID] = []
        self.listening = False
        self.changed = asyncio.Event()
        self._freed = asyncio.Event()

    def free_slots(self) -> int:
        return self.slots - len(self.held)

    async def slot_freed(self) -> None:
        self._freed.clear()
        if self.free_slots() <= 0:
            await self._freed.wait()

    async def claim(self, driver: Any, run_ids: list[uuid.UUID]) -> Sequence[Any]:
        # On the pick's own transaction: the queue's job rows are locked by it right now.
        assert driver.is_in_transaction()
        self.claims.append(sorted(run_ids))
        return run_ids

    def launch(self, claimed: Sequence[Any]) -> None:
        self.held.update(claimed)
        self.changed.set()

    def finish(self, run_id: uuid.UUID) -> None:
        self.held.discard(run_id)
        self._freed.set()

    def cancel_requested(self, run_id: uuid.UUID) -> None:
        self.cancels.append(run_id)
        self.changed.set()

    async def reconnected(self) -> None:
        self.listening = True
        self.changed.set()

    async def until(self, condition: Any, timeout_s: float = 10) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def serving(database_url: str, consumer: Recorder, **overrides: Any,
                  ) -> AsyncIterator[tuple[PgRunQueue, AsyncEngine]]:
    settings = make_settings(database_url, EXECUTION_MODE="queue", **overrides)
    engine = create_engine(settings.DATABASE_URL)
    queue = PgRunQueue(settings, engine)
    task = asyncio.create_task(queue.serve(consumer))
    try:
        yield queue, engine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await engine.dispose()


async def enqueue(queue: PgRunQueue, engine: AsyncEngine, *, commit: bool = True,
                  ) -> uuid.UUID:
    run_id = uuid.uuid4()
    async with async_sessionmaker(engine)() as session:
        await queue.enqueue(session, run_id)
        if commit:
            await session.commit()
        else:
            await session.rollback()
    return run_id


async def jobs_left(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM pgqueuer"))).scalar_one())


async def test_jobs_that_arrive_within_the_linger_are_picked_in_one_transaction(
        database_url: str) -> None:
    consumer = Recorder(slots=8)
    async with serving(database_url, consumer, RUN_PICKUP_LINGER_MS=1000) as (queue, engine):
        await consumer.until(lambda: consumer.listening)
        runs = [await enqueue(queue, engine) for _ in range(3)]  # three commits
        await consumer.until(lambda: len(consumer.held) == 3)
        assert consumer.claims == [sorted(runs)]
        assert await jobs_left(engine) == 0  # acked in the claim's transaction


async def test_a_pick_takes_only_as_many_jobs_as_the_consumer_has_free_slots(
        database_url: str) -> None:
    consumer = Recorder(slots=2)
    async with serving(database_url, consumer, RUN_PICKUP_LINGER_MS=200) as (queue, engine):
        runs = [await enqueue(queue, engine) for _ in range(5)]
        await consumer.until(lambda: len(consumer.held) == 2)
        assert await jobs_left(engine) == 3
        first = sorted(consumer.held)
        for run_id in first:
            consumer.finish(run_id)
        await consumer.until(lambda: len(consumer.held) == 2 and consumer.held.isdisjoint(first))
        assert await jobs_left(engine) == 1
        for run_id in list(consumer.held):
            consumer.finish(run_id)
        await consumer.until(lambda: len(consumer.held) == 1)
        assert sorted(r for claim in consumer.claims for r in claim) == sorted(runs)
        assert [len(claim) for claim in consumer.claims] == [2, 2, 1]


async def test_an_enqueue_rolled_back_with_its_request_leaves_no_job(database_url: str) -> None:
    consumer = Recorder(slots=4)
    async with serving(database_url, consumer, RUN_PICKUP_LINGER_MS=0) as (queue, engine):
        await enqueue(queue, engine, commit=False)
        kept = await enqueue(queue, engine)
        await consumer.until(lambda: kept in consumer.held)
        assert consumer.claims == [[kept]]
        assert await jobs_left(engine) == 0


async def test_a_cancel_reaches_the_consumer_through_the_notification(database_url: str) -> None:
    consumer = Recorder(slots=4)
    async with serving(database_url, consumer, RUN_POLL_S=60) as (queue, engine):
        await consumer.until(lambda: consumer.listening)
        run_id = uuid.uuid4()
        async with async_sessionmaker(engine)() as session:
            await queue.cancel(session, run_id)
            await session.commit()
        await consumer.until(lambda: run_id in consumer.cancels)


async def test_a_freed_slot_picks_at_once_while_jobs_are_waiting_and_lingers_again_after(
        database_url: str) -> None:
    linger_s = 1.0  # the longest RUN_PICKUP_LINGER_MS allows
    consumer = Recorder(slots=1)
    loop = asyncio.get_running_loop()
    async with serving(database_url, consumer, RUN_PICKUP_LINGER_MS=linger_s * 1000,
                       ) as (queue, engine):
        await consumer.until(lambda: consumer.listening)
        first, second = [await enqueue(queue, engine) for _ in range(2)]
        await consumer.until(lambda: consumer.held == {first})
        # The pick filled the one free slot: jobs may be waiting, so the freed slot does not
        # linger (it would only sit idle) ...
        freed_at = loop.time()
        consumer.finish(first)
        await consumer.until(lambda: consumer.held == {second})
        assert loop.time() - freed_at < linger_s / 2
        # ... and once a pick finds the queue empty, the next job is lingered for again.
        consumer.finish(second)
        await asyncio.sleep(0.3)  # the empty pick
        enqueued_at = loop.time()
        third = await enqueue(queue, engine)
        await consumer.until(lambda: consumer.held == {third})
        assert loop.time() - enqueued_at >= linger_s * 0.9
        assert consumer.claims == [[first], [second], [third]]


async def test_the_queue_log_is_pruned_of_rows_past_the_retention_only(
        database_url: str) -> None:
    consumer = Recorder(slots=0)  # takes nothing: the jobs stay queued
    async with serving(database_url, consumer, QUEUE_LOG_RETENTION_H=1) as (queue, engine):
        old = [await enqueue(queue, engine) for _ in range(3)]
        recent = await enqueue(queue, engine)
        async with engine.begin() as connection:
            await connection.execute(text(
                "UPDATE pgqueuer_log SET created = now() - interval '61 minutes' "
                "WHERE job_id IN (SELECT id FROM pgqueuer WHERE payload = ANY(:old))"),
                {"old": [run_id.bytes for run_id in old]})
        queue.prune_batch = 2  # three rows: a full batch, then a short one
        assert await queue.prune_log() == 3
        assert await queue.prune_log() == 0
        async with engine.connect() as connection:
            left = (await connection.execute(text(
                "SELECT j.payload FROM pgqueuer_log l JOIN pgqueuer j ON j.id = l.job_id"
            ))).scalars().all()
        assert [bytes(payload) for payload in left] == [recent.bytes]
        assert await jobs_left(engine) == 4  # the jobs themselves are pgqueuer's, untouched
