"""Awaiting an executor eagerly: its first step runs at once, and the per-attempt deadline is
armed only if it suspends.

A node that finishes without ever waiting (a text transform, an output sink, the echo
provider) cannot be interrupted by a timeout anyway — cancellation only lands where a
coroutine suspends — so arming and disarming a timer for it is pure cost: `asyncio.timeout`
was a tenth of the engine's per-node time. A node that does suspend gets the same deadline it
would have had, counted from before its first step.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def run_with_deadline(awaitable: Awaitable[T], timeout_s: float) -> T:
    """`async with asyncio.timeout(timeout_s): return await awaitable`, minus the timer when
    a coroutine completes in its first step. Other awaitables take the plain path."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    if not isinstance(awaitable, types.CoroutineType):
        async with asyncio.timeout_at(deadline):
            return await awaitable
    coro: Coroutine[Any, Any, T] = awaitable
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    async with asyncio.timeout_at(deadline):
        return await _resume(coro, yielded)


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
