"""One WebSocket tunnel: an ordered, exactly-once stream of its user's events.

Live events arrive through a bounded queue, possibly out of `user_seq` order (an event
written inside a request transaction is dispatched after the request commits, which may be
after a later event written by the group-commit writer). The sender keeps `last_cursor`, the
last cursor it sent, and for every persisted event:

* cursor ≤ last_cursor: already sent (replay overlap or late dispatch) → dropped;
* cursor = last_cursor + 1: sent;
* cursor > last_cursor + 1: the missing ones are already committed (see core/bus/log.py), so
  they are read from the log and sent first.

In queue mode (DESIGN.md §10) the events of a replica's users are written by other processes:
a hint carries the event, which is offered like a local one, or, for an event too large for a
notification, only its cursor (`nudge`): the sender reads up to there with the same catch-up.
Nudges are coalesced: one is queued at a time, and a later hint only raises its target.

Resume is the same rule: `last_cursor` starts at the client's `after` and the sender first
reads everything after it from the log, while live events queue behind. Ephemeral messages
(no cursor) go out as they come.

The queue is bounded in bytes (`WS_SEND_QUEUE_BYTES`, as Centrifugo's client queue), not in
messages: one 20 KB output weighs as much as a hundred status events. A message's bytes count
from the moment it is offered until `websocket.send` returns for it. That await is where a
stalled reader shows: once the kernel's socket buffers and the server's transport buffer are
full, uvicorn's send waits for the socket to drain, so the queue in front of it grows and
`offer` refuses past the bound (the ConnectionManager then closes the socket with 4409). Events
replayed from the log (`_catch_up`) never pass through the queue, so they are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from app.core.ws.messages import CloseCode, encode

logger = logging.getLogger("cascade.ws")

# (cursor or None, JSON text). Serialized once per event, shared by every tunnel.
Outgoing = tuple[int | None, str]
_NUDGE = "nudge"  # the queue item of a nudge; compared by identity, never sent
_NUDGE_BYTES = 64  # what a queued nudge counts against the bound
FetchAfter = Callable[[int, int, int | None, int], Awaitable[list[Outgoing]]]


def text_bytes(text: str) -> int:
    """The UTF-8 size of a message. `str.isascii()` reads a flag CPython keeps on the string,
    so the usual all-ASCII event costs no encoding."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


@dataclass
class TunnelLimits:
    queue_bytes: int
    ping_interval_s: float
    idle_timeout_s: float
    replay_batch: int


class Tunnel:
    def __init__(
        self, websocket: WebSocket, user_id: int, *, after: int, fetch_after: FetchAfter,
        limits: TunnelLimits, expires_at: float,
    ) -> None:
        self.websocket = websocket
        self.user_id = user_id
        self.last_cursor = after
        self._fetch_after = fetch_after
        self._limits = limits
        self._expires_at = expires_at
        # Unbounded as a Queue: the bound is on `queued_bytes`, checked in `offer`.
        self._queue: asyncio.Queue[tuple[int | None, str, int]] = asyncio.Queue()
        self.queued_bytes = 0
        self.peak_queued_bytes = 0  # the most it ever held (the tests read it)
        self._last_received = time.monotonic()
        self._last_sent = time.monotonic()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._closer: asyncio.Future[None] | None = None
        self._nudge_target = 0  # the highest cursor a hint announced
        self._nudge_queued = False

    # --- called by the ConnectionManager (never blocks) --------------------------------------
    def offer(self, item: Outgoing, size: int | None = None) -> bool:
        """Queue an outgoing message (`size`: its UTF-8 bytes, when the caller knows them);
        False when it would take the queued bytes past the bound (a stalled reader).

        An empty queue takes any one message, however large: a client that keeps up is never
        closed because one event is bigger than the bound."""
        if self.closed.is_set():
            return True
        cursor, text = item
        if size is None:
            size = text_bytes(text)
        queued = self.queued_bytes + size
        if queued > self._limits.queue_bytes and self.queued_bytes:
            return False
        self.queued_bytes = queued
        if queued > self.peak_queued_bytes:
            self.peak_queued_bytes = queued
        self._queue.put_nowait((cursor, text, size))
        return True

    def nudge(self, cursor: int) -> bool:
        """The log holds this user's events up to `cursor`: send what is missing (a hint
        from another process, or the safety poll). False when the queue is over its bound."""
        if cursor <= max(self.last_cursor, self._nudge_target):
            return True
        self._nudge_target = cursor
        if self._nudge_queued or self.closed.is_set():
            return True
        if self.queued_bytes + _NUDGE_BYTES > self._limits.queue_bytes and self.queued_bytes:
            return False
        self._nudge_queued = True
        self.queued_bytes += _NUDGE_BYTES
        self._queue.put_nowait((cursor, _NUDGE, _NUDGE_BYTES))
        return True

    def send_message(self, message: dict[str, Any]) -> bool:
        return self.offer((None, encode(message)))

    def touch(self) -> None:
        self._last_received = time.monotonic()

    # --- the tasks ---------------------------------------------------------------------------
    async def run_sender(self) -> None:
        try:
            await self._catch_up(None)
            while True:
                cursor, text, size = await self._queue.get()
                if text is _NUDGE:
                    self._nudge_queued = False
                    await self._catch_up(self._nudge_target)
                elif cursor is None:
                    await self._send(text)
                elif cursor <= self.last_cursor:
                    pass
                else:
                    if cursor > self.last_cursor + 1:
                        await self._catch_up(cursor - 1)
                    await self._send(text)
                    self.last_cursor = cursor
                # Released only now: while `_send` waits on a stalled socket the message
                # still counts against the bound.
                self.queued_bytes -= size
        except Exception as exc:  # the socket went away under us
            logger.debug("tunnel sender for user %s stopped: %r", self.user_id, exc)
            await self.close(CloseCode.GOING_AWAY)

    async def _catch_up(self, until: int | None) -> None:
        """Send every logged event after last_cursor (and up to `until`)."""
        while until is None or self.last_cursor < until:
            page = await self._fetch_after(self.user_id, self.last_cursor, until,
                                           self._limits.replay_batch)
            for cursor, text in page:
                await self._send(text)
                self.last_cursor = cursor if cursor is not None else self.last_cursor
            if len(page) < self._limits.replay_batch:
                return

    async def _send(self, text: str) -> None:
        await self.websocket.send_text(text)
        self._last_sent = time.monotonic()

    async def run_watchdog(self) -> None:
        """Heartbeat ping when idle, 4408 when the client is silent, 4001 at token expiry."""
        tick = max(0.05, min(self._limits.ping_interval_s, self._limits.idle_timeout_s) / 4)
        while not self.closed.is_set():
            # Wake at the token's expiry too, not up to a whole tick after it.
            await asyncio.sleep(min(tick, max(0.0, self._expires_at - time.time())))
            now = time.monotonic()
            if time.time() >= self._expires_at:
                await self.close(CloseCode.UNAUTHORIZED, "token expired")
            elif now - self._last_received >= self._limits.idle_timeout_s:
                await self.close(CloseCode.IDLE, "idle")
            elif now - self._last_sent >= self._limits.ping_interval_s:
                self.send_message({"type": "ping", "data": {}})
                self._last_sent = now

    async def close(self, code: int, reason: str = "") -> None:
        """Mark the tunnel closed and send the close frame.

        The frame is sent by a task of its own: behind a stalled reader (4409) it waits until
        the data already in the socket drains, and the tasks that ask for the close (the
        watchdog, the receiver) are cancelled by the endpoint meanwhile. The endpoint waits
        for it (`wait_closed`) before it returns, or the server would drop the connection
        with no close frame and the client would see 1006 instead of the code."""
        if self.closed.is_set():
            return
        self.close_code = code
        self.closed.set()
        self._closer = asyncio.ensure_future(self._send_close(code, reason))
        with contextlib.suppress(asyncio.TimeoutError):
            # Callers never wait long (the ConnectionManager's fan-out, the shutdown).
            await asyncio.wait_for(asyncio.shield(self._closer), 1.0)

    async def _send_close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason)

    async def wait_closed(self, within: float) -> None:
        """Wait (at most `within` seconds) until the close frame has been handed over."""
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._closer), within)
