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
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.bus.log import forget_numbers, write_events
from app.core.di.registry import Registry
from app.core.events import Event, EventTypes, Handler, matches

logger = logging.getLogger("cascade.bus")

_PENDING_KEY = "cascade_pending_events"

Persist = Callable[[list[Event]], Awaitable[None]]


def _check_types(events: Sequence[Event]) -> None:
    """Refuse the whole call when any event's type is not a known one (Event checks its type
    when built, but the dataclass is mutable)."""
    for event in events:
        if event.type not in EventTypes.PERSISTED and event.type not in EventTypes.EPHEMERAL:
            raise ValueError(f"unknown event type {event.type!r}")


@dataclass
class _Write:
    events: list[Event]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class EventBus:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], registry: Registry,
        *, batch_max: int = 500, persist: Persist | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # Benchmarks swap the database for app.core.bus.memory.InMemoryEventLog.
        self._persist_override = persist
        self._registry = registry
        self._batch_max = batch_max
        self._subscribers: list[tuple[tuple[str, ...], Handler]] = []
        # event type → its handlers, each with whether it must be awaited
        self._route_cache: dict[str, list[tuple[Handler, bool]]] = {}
        self._queue: asyncio.Queue[_Write] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    # --- subscribers -------------------------------------------------------------------------
    def add_subscriber(self, patterns: tuple[str, ...], handler: Handler) -> None:
        self._subscribers.append((patterns, handler))
        self._route_cache.clear()

    def handlers_for(self, event_type: str) -> list[tuple[Handler, bool]]:
        handlers = self._route_cache.get(event_type)
        if handlers is None:
            handlers = [(h, inspect.iscoroutinefunction(h)) for patterns, h in self._subscribers
                        if any(matches(p, event_type) for p in patterns)]
            self._route_cache[event_type] = handlers
        return handlers

    async def dispatch(self, events: Sequence[Event]) -> None:
        registry = self._registry
        for event in events:
            for handler, is_async in self.handlers_for(event.type):
                try:
                    if is_async:
                        await cast(Awaitable[None], handler(event, registry))
                    else:
                        handler(event, registry)
                except Exception:
                    logger.exception("subscriber %s failed on event %s (%s)",
                                     getattr(handler, "__qualname__", handler), event.id,
                                     event.type)

    # --- the group-commit writer -------------------------------------------------------------
    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run_writer(), name="event-log-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._writer is None:
            return
        await self._queue.join()
        self._writer.cancel()
        try:
            await self._writer
        except asyncio.CancelledError:
            pass
        self._writer = None

    async def emit(self, event: Event) -> Event:
        await self.emit_many([event])
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
        write = _Write(list(events))
        self._queue.put_nowait(write)
        return write.done

    @property
    def batch_max(self) -> int:
        """Events the writer puts in one transaction (at least one whole write)."""
        return self._batch_max

    @property
    def backlog(self) -> int:
        """Writes queued and not yet taken by the writer."""
        return self._queue.qsize()

    async def _run_writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].events)
            while size < self._batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                size += len(item.events)
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

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
                await self._finish([write])
            return
        await self._finish(batch)

    async def _persist(self, events: list[Event]) -> None:
        if not any(event.persisted for event in events):
            return
        if self._persist_override is not None:
            await self._persist_override(events)
            return
        async with self._sessionmaker() as session, session.begin():
            await write_events(session, events)

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
        await write_events(session, events)
        session.info.setdefault(_PENDING_KEY, []).extend(events)

    async def dispatch_committed(self, session: AsyncSession) -> None:
        pending: list[Event] = session.info.pop(_PENDING_KEY, [])
        if pending:
            await self.dispatch(pending)

    def discard_uncommitted(self, session: AsyncSession) -> None:
        forget_numbers(session.info.pop(_PENDING_KEY, []))
