"""Awaiting executors eagerly, under deadlines that share one timer.

An executor's first step runs at once, and its per-attempt deadline is registered only if it
suspends. A node that finishes without ever waiting (a text transform, an output sink, the echo
provider) cannot be interrupted by a timeout anyway — cancellation only lands where a
coroutine suspends — so arming and disarming a timer for it is pure cost.

A node that does suspend gets the deadline it would have had under `asyncio.timeout_at`,
counted from before its first step, with the same outcome: past it, the node's task is
cancelled and the CancelledError becomes TimeoutError where the deadline was entered, unless
someone else cancelled the task too. The difference is the timer: `asyncio.timeout` arms and
cancels one loop timer per attempt, which for a level of short nodes cost more of the level's
time than the nodes' own work; `Deadlines` keeps the attempts of a run in a heap behind one
timer, armed for the earliest deadline, so an attempt costs a heap push and a flag.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")

# Done attempts stay in the heap until their deadline comes up or until they outnumber the
# live ones this many times over (then the heap is rebuilt without them).
_COMPACT_RATIO = 2
_COMPACT_MIN = 64


class _Attempt:
    __slots__ = ("cancelling", "done", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()  # cancel requests that were not ours
        self.expired = False
        self.done = False


class Deadlines:
    """Per-attempt deadlines of one run's nodes behind a single loop timer."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()  # ties in the heap never compare attempts
        self._live = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")

    @property
    def pending(self) -> int:
        """Attempts waiting under a deadline now."""
        return self._live

    async def run(self, awaitable: Awaitable[T], timeout_s: float) -> T:
        """`async with asyncio.timeout(timeout_s): return await awaitable`, minus the timer
        when a coroutine completes in its first step. Other awaitables take the plain path."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not isinstance(awaitable, types.CoroutineType):
            async with asyncio.timeout_at(deadline):
                return await awaitable
        coro: Coroutine[Any, Any, T] = awaitable
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
        task = asyncio.current_task()
        if task is None:  # not inside a task: nothing this class could cancel
            async with asyncio.timeout_at(deadline):
                return await _resume(coro, yielded)
        attempt = _Attempt(task)
        self._add(loop, deadline, attempt)
        try:
            result = await _resume(coro, yielded)
        except BaseException as exc:
            # As asyncio.Timeout.__aexit__: an expired attempt takes its cancel request back,
            # and the cancellation is a timeout only if nobody else asked for one.
            if (attempt.expired and task.uncancel() <= attempt.cancelling
                    and isinstance(exc, asyncio.CancelledError)):
                raise TimeoutError from exc
            raise
        finally:
            attempt.done = True
            self._live -= 1
        if attempt.expired:  # expired, but the coroutine finished all the same
            task.uncancel()
        return result

    def close(self) -> None:
        """Drop the timer (the run is over; no attempt is waiting)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = float("inf")
        self._heap.clear()

    # --- the heap and its timer ----------------------------------------------------------------
    def _add(self, loop: asyncio.AbstractEventLoop, deadline: float,
             attempt: _Attempt) -> None:
        self._live += 1
        heap = self._heap
        if len(heap) >= _COMPACT_MIN and len(heap) > _COMPACT_RATIO * self._live:
            heap[:] = [item for item in heap if not item[2].done]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._order), attempt))
        if deadline < self._timer_when:
            self._arm(loop, deadline)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer fired: cancel every live attempt whose deadline has come (the one the
        timer was armed for counts as come, as asyncio's own timeout would)."""
        self._timer = None
        now = max(loop.time(), self._timer_when)
        self._timer_when = float("inf")
        heap = self._heap
        while heap and (heap[0][0] <= now or heap[0][2].done):
            attempt = heapq.heappop(heap)[2]
            if not attempt.done:  # each attempt is in the heap once
                attempt.expired = True
                attempt.task.cancel()
        if heap:
            self._arm(loop, heap[0][0])


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Continue a coroutine that has run its first step and yielded `yielded`: what it yields
    goes to the task, and what the task sends or throws (a cancellation) goes back to it —
    `yield from coro`, joined one step late."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
