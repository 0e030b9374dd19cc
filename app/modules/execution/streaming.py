"""Coalescing token deltas into a few `execution.node.stream` messages (never persisted)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from app.core.events import Event, EventTypes


class StreamCoalescer:
    """Buffers deltas and emits them at most every `interval_s`; `flush()` sends the rest.
    Concatenated, the emitted deltas equal the completed node's text."""

    def __init__(self, emit: Callable[[Event], Awaitable[object]], *, user_id: int,
                 run_id: uuid.UUID, node_id: str, interval_s: float) -> None:
        self._emit = emit
        self._user_id = user_id
        self._run_id = run_id
        self._node_id = node_id
        self._interval_s = interval_s
        self._buffer: list[str] = []
        self._last = 0.0

    async def push(self, delta: str) -> None:
        self._buffer.append(delta)
        if time.monotonic() - self._last >= self._interval_s:
            await self.flush()

    def reset(self) -> None:
        """Drop what a failed attempt streamed but did not send."""
        self._buffer.clear()

    async def flush(self) -> None:
        if not self._buffer:
            return
        delta = "".join(self._buffer)
        self._buffer.clear()
        self._last = time.monotonic()
        await self._emit(Event(EventTypes.EXECUTION_NODE_STREAM,
                               {"node_id": self._node_id, "delta": delta},
                               user_id=self._user_id, run_id=self._run_id))
