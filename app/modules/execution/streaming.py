"""Coalescing token deltas into a few `execution.node.stream` messages (never persisted)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from app.core.events import Event, EventTypes


class StreamCoalescer:
    """Buffers one node's deltas and emits them at most every `interval_s`; `flush()` sends
    the rest. Each message carries the attempt that streamed it (DESIGN.md §5), so a client
    drops a failed attempt's text when the next attempt's deltas start; concatenated, the
    deltas of the last attempt equal the completed node's text."""

    def __init__(self, emit: Callable[[Event], Awaitable[object]], *, user_id: int,
                 run_id: uuid.UUID, node_id: str, attempt: int, interval_s: float,
                 fence: int | None = None) -> None:
        self._emit = emit
        self._fence = fence  # the runner's (queue mode): deltas are fenced like its events
        self._user_id = user_id
        self._run_id = run_id
        self._node_id = node_id
        self.attempt = attempt
        self._interval_s = interval_s
        self._buffer: list[str] = []
        self._last = 0.0

    async def push(self, delta: str) -> None:
        self._buffer.append(delta)
        if time.monotonic() - self._last >= self._interval_s:
            await self.flush()

    def reset(self, next_attempt: int) -> None:
        """Drop what a failed attempt streamed but did not send; later deltas belong to
        `next_attempt`, and its first one goes out at once."""
        self._buffer.clear()
        self.attempt = next_attempt
        self._last = 0.0

    async def flush(self) -> None:
        if not self._buffer:
            return
        delta = "".join(self._buffer)
        self._buffer.clear()
        self._last = time.monotonic()
        await self._emit(Event(EventTypes.EXECUTION_NODE_STREAM,
                               {"node_id": self._node_id, "attempt": self.attempt,
                                "delta": delta},
                               user_id=self._user_id, run_id=self._run_id, fence=self._fence))
