"""emit → persist to event_logs → dispatch to subscribers (DESIGN.md §5).

Two ways in:

* `await bus.emit(event)` / `emit_many(events)`: the event (and the state ops it carries) is
  handed to a group-commit writer. One background task drains whatever emitters queued while
  the previous transaction was in flight and writes it all in one transaction, so a thousand
  concurrent emitters cost a handful of commits, and SQLite sees a single writer. The emitter
  resumes once its events are committed and dispatched.
* `await bus.emit_in(session, event)`: the event joins the caller's transaction (a request
  that creates a project writes the project and `project.created` together). The request's
  session dependency dispatches it after commit (`dispatch_committed`).

Subscribers run after commit, in log order, one event at a time; a failing subscriber is
logged with the event id and never fails the emitter or the other subscribers. Subscribers
must be quick (the tunnel bridge only enqueues).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.bus.fanout import publish_hints
from app.core.bus.log import forget_numbers, write_events
from app.core.db.bulk import bulk_for, bulk_transaction
from app.core.di.registry import Registry
from app.core.events import Event, EventTypes, Handler, matches

logger = logging.getLogger("cascade.bus")

_PENDING_KEY = "cascade_pending_events"
_WRITER_YIELDS = 3  # loop turns the writer lets pass before it takes a batch (_run_writer)

Persist = Callable[[list[Event]], Awaitable[None]]
T = TypeVar("T")


def _check_types(events: Sequence[Event]) -> None:
    """Refuse the whole call when any event's type is not a known one (Event checks its type
    when built, but the dataclass is mutable)."""
    for event in events:
        if event.type not in EventTypes.KNOWN:
            raise ValueError(f"unknown event type {event.type!r}")


class _Write:
    __slots__ = ("done", "events")

    def __init__(self, events: list[Event], done: asyncio.Future[None]) -> None:
        self.events = events
        self.done = done  # resolved once the events are committed and dispatched


class _Pipe(Generic[T]):
    """A FIFO between two tasks, lighter than asyncio.Queue on a path that carries every
    event: `put` never waits; `take` returns what is there (waiting for the first item);
    `drained()` waits until every item put has been taken and marked `done`."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._unfinished = 0
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        self._unfinished += 1
        self._drained.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait_for_items(self) -> None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def take(self, weight: Callable[[T], int] = lambda _: 1,
                   limit: int = 1 << 62) -> list[T]:
        """The first item, then more while the weight taken is under `limit`."""
        await self.wait_for_items()
        taken = [self._items.popleft()]
        total = weight(taken[0])
        while self._items and total < limit:
            taken.append(self._items.popleft())
            total += weight(taken[-1])
        return taken

    def done(self, count: int) -> None:
        self._unfinished -= count
        if self._unfinished == 0:
            self._drained.set()

    async def drained(self) -> None:
        await self._drained.wait()


class EventBus:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], registry: Registry,
        *, batch_max: int = 500, persist: Persist | None = None, hints: bool = False,
    ) -> None:
        self._sessionmaker = sessionmaker
        # Queue mode: every transaction that writes events also sends their wake-up hints
        # (and carries the stream deltas) to the other processes (app/core/bus/fanout.py).
        self._hints = hints
        # Benchmarks swap the database for app.core.bus.memory.InMemoryEventLog.
        self._persist_override = persist
        self._registry = registry
        self._batch_max = batch_max
        self._subscribers: list[tuple[tuple[str, ...], Handler]] = []
        self._route_cache: dict[str, list[Handler]] = {}
        # Writes waiting for the writer; then batches it committed, waiting for the
        # dispatcher. Two tasks, so the writer starts the next transaction while the last
        # batch is dispatched.
        self._queue: _Pipe[_Write] = _Pipe()
        self._committed: _Pipe[list[_Write]] = _Pipe()
        self._writer: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # --- subscribers -------------------------------------------------------------------------
    def add_subscriber(self, patterns: tuple[str, ...], handler: Handler) -> None:
        self._subscribers.append((patterns, handler))
        self._route_cache.clear()

    def handlers_for(self, event_type: str) -> list[Handler]:
        handlers = self._route_cache.get(event_type)
        if handlers is None:
            handlers = [h for patterns, h in self._subscribers
                        if any(matches(p, event_type) for p in patterns)]
            self._route_cache[event_type] = handlers
        return handlers

    async def dispatch(self, events: Sequence[Event]) -> None:
        registry, routes = self._registry, self._route_cache
        for event in events:
            handlers = routes.get(event.type)
            if handlers is None:
                handlers = self.handlers_for(event.type)
            for handler in handlers:
                try:
                    # A plain function returns None and costs no coroutine; anything else
                    # it returns (a coroutine, from an async function or an object with an
                    # async __call__) is awaited.
                    result = handler(event, registry)
                    if result is not None:
                        await result
                except Exception:
                    logger.exception("subscriber %s failed on event %s (%s)",
                                     getattr(handler, "__qualname__", handler), event.id,
                                     event.type)

    # --- the group-commit writer -------------------------------------------------------------
    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run_writer(), name="event-log-writer")
            self._dispatcher = asyncio.create_task(self._run_dispatcher(),
                                                   name="event-dispatcher")

    async def stop(self) -> None:
        """Write and dispatch what is queued, then stop."""
        if self._writer is None:
            return
        await self._queue.drained()
        await self._committed.drained()
        for task in (self._writer, self._dispatcher):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._writer = self._dispatcher = None

    async def emit(self, event: Event) -> Event:
        await self.enqueue((event,))  # see emit_many on cancellation
        return event

    async def emit_many(self, events: Sequence[Event]) -> None:
        """Persist (persisted types) and dispatch events in order; returns after both."""
        if not events:
            return
        # An emitter cancelled while it waits (a cancelled run) cancels only this future:
        # the write stays queued and the writer commits and dispatches it all the same.
        await self.enqueue(events)

    def enqueue(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Queue events without waiting; the future resolves once they are committed and
        dispatched. Writes are committed and dispatched in the order they were queued, so an
        emitter that does not wait (the runner) still sees its events logged in order.
        Ephemeral events ride the same queue, so they never overtake earlier events."""
        _check_types(events)
        if self._writer is None:
            raise RuntimeError("the event bus is not started")
        write = _Write(list(events), asyncio.get_running_loop().create_future())
        self._queue.put(write)
        return write.done

    @property
    def batch_max(self) -> int:
        """Events the writer puts in one transaction (at least one whole write)."""
        return self._batch_max

    @property
    def backlog(self) -> int:
        """Writes queued and not yet taken by the writer."""
        return len(self._queue)

    async def _run_writer(self) -> None:
        while True:
            await self._queue.wait_for_items()
            # Let the tasks that are ready run first: nodes about to start their work (whose
            # events woke this task) should not wait for the log; their next events join
            # this batch instead. A run moving to its next level takes three turns of the
            # loop (the last node's task ends → gather resolves → the run resumes and starts
            # the level's workers), and a batch's CPU landing inside that transition held
            # the whole level back: on the 50 × 20 level benchmark one turn left the
            # PostgreSQL log at +17–18% over the ideal, three at +13–15%.
            for _ in range(_WRITER_YIELDS):
                await asyncio.sleep(0)
            batch = await self._queue.take(lambda write: len(write.events), self._batch_max)
            try:
                await self._write_batch(batch)
            finally:
                self._queue.done(len(batch))

    async def _run_dispatcher(self) -> None:
        """Dispatches committed batches in commit order, then resolves their writes."""
        while True:
            committed = await self._committed.take()
            try:
                for batch in committed:
                    await self._finish(batch)
            finally:
                self._committed.done(len(committed))

    async def _write_batch(self, batch: list[_Write]) -> None:
        events = [event for write in batch for event in write.events]
        try:
            await self._persist(events)
        except Exception:
            forget_numbers(events)
            if len(batch) == 1:
                self._fail(batch[0], "event batch")
                return
            # One bad write (say, for a user deleted meanwhile) must not sink its neighbours:
            # retry them one by one.
            for write in batch:
                try:
                    await self._persist(write.events)
                except Exception:
                    forget_numbers(write.events)
                    self._fail(write, "event write")
                    continue
                self._committed.put([write])
            return
        self._committed.put(batch)

    async def _persist(self, events: list[Event]) -> None:
        if not self._hints and not any(event.persisted for event in events):
            return
        if self._persist_override is not None:
            await self._persist_override(events)
            return
        async with bulk_transaction(self._sessionmaker) as bulk:
            await write_events(bulk, events)
            if self._hints:
                await publish_hints(bulk, events)

    async def _finish(self, batch: list[_Write]) -> None:
        await self.dispatch([event for write in batch for event in write.events])
        for write in batch:
            if not write.done.done():
                write.done.set_result(None)

    @staticmethod
    def _fail(write: _Write, what: str) -> None:
        logger.exception("%s failed; %d event(s) not written", what, len(write.events))
        if not write.done.done():
            write.done.set_exception(RuntimeError("the event log write failed"))

    # --- events inside a caller's transaction ------------------------------------------------
    async def emit_in(self, session: AsyncSession, *events: Event) -> None:
        _check_types(events)
        bulk = await bulk_for(session)
        await write_events(bulk, events)
        if self._hints:
            await publish_hints(bulk, events)
        session.info.setdefault(_PENDING_KEY, []).extend(events)

    async def dispatch_committed(self, session: AsyncSession) -> None:
        pending: list[Event] = session.info.pop(_PENDING_KEY, [])
        if pending:
            await self.dispatch(pending)

    def discard_uncommitted(self, session: AsyncSession) -> None:
        forget_numbers(session.info.pop(_PENDING_KEY, []))
