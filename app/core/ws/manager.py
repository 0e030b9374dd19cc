"""ConnectionManager: every open tunnel, by user; fan-out that never blocks the caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.core.events import Event
from app.core.ws.messages import CloseCode, encode
from app.core.ws.tunnel import Outgoing, Tunnel, text_bytes

logger = logging.getLogger("cascade.ws")

# A client message handler: (tunnel, data, request_id) → None. It answers through the tunnel.
MessageHandler = Callable[[Tunnel, dict[str, Any], str | None], Awaitable[None]]


class TooManyTunnels(Exception):
    pass


class ConnectionManager:
    def __init__(self, max_tunnels_per_user: int) -> None:
        self._max = max_tunnels_per_user
        self._tunnels: dict[int, set[Tunnel]] = {}
        self.message_handlers: dict[str, MessageHandler] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, tunnel: Tunnel) -> None:
        tunnels = self._tunnels.setdefault(tunnel.user_id, set())
        if len(tunnels) >= self._max:
            raise TooManyTunnels(f"at most {self._max} tunnels per user")
        tunnels.add(tunnel)

    def remove(self, tunnel: Tunnel) -> None:
        tunnels = self._tunnels.get(tunnel.user_id)
        if tunnels is not None:
            tunnels.discard(tunnel)
            if not tunnels:
                del self._tunnels[tunnel.user_id]

    def count(self, user_id: int | None = None) -> int:
        if user_id is not None:
            return len(self._tunnels.get(user_id, ()))
        return sum(len(t) for t in self._tunnels.values())

    def tunnels_of(self, user_id: int) -> list[Tunnel]:
        return list(self._tunnels.get(user_id, ()))

    def handle(self, message_type: str, handler: MessageHandler) -> None:
        self.message_handlers[message_type] = handler

    def send_event(self, event: Event) -> None:
        """Fan one event out to its user's tunnels (serialized once)."""
        tunnels = self._tunnels.get(event.user_id)
        if tunnels:
            self._offer_all(tunnels, (event.user_seq, encode(event.to_message())))

    def send_to_user(self, user_id: int, message: dict[str, Any]) -> None:
        tunnels = self._tunnels.get(user_id)
        if tunnels:
            self._offer_all(tunnels, (message.get("cursor"), encode(message)))

    def send_text_to_user(self, user_id: int, text: str, cursor: int | None = None) -> None:
        """An already encoded message from another process: a logged event with its
        cursor, or an ephemeral one (a stream delta) without."""
        tunnels = self._tunnels.get(user_id)
        if tunnels:
            self._offer_all(tunnels, (cursor, text))

    def nudge(self, user_id: int, cursor: int) -> None:
        """The log holds the user's events up to `cursor` (queue mode): each of the user's
        tunnels catches up to it from the log."""
        for tunnel in list(self._tunnels.get(user_id, ())):
            if not tunnel.nudge(cursor):
                self._drop_slow(tunnel)

    def user_ids(self) -> list[int]:
        return list(self._tunnels)

    def broadcast(self, message: dict[str, Any]) -> None:
        text = encode(message)
        for tunnels in list(self._tunnels.values()):
            self._offer_all(tunnels, (None, text))

    def _offer_all(self, tunnels: set[Tunnel], item: Outgoing) -> None:
        size = text_bytes(item[1])  # once per message, not once per tunnel
        for tunnel in list(tunnels):
            if not tunnel.offer(item, size):
                self._drop_slow(tunnel)

    def _drop_slow(self, tunnel: Tunnel) -> None:
        """A stalled reader: drop it now so it costs nobody else anything; the client
        resumes from its cursor."""
        logger.info("closing slow tunnel of user %s (%d bytes queued)",
                    tunnel.user_id, tunnel.queued_bytes)
        self.remove(tunnel)
        task = asyncio.create_task(tunnel.close(CloseCode.SLOW_CONSUMER, "slow consumer"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self, code: int = CloseCode.GOING_AWAY) -> None:
        tunnels = [t for group in self._tunnels.values() for t in group]
        self._tunnels.clear()
        await asyncio.gather(*(t.close(code, "server shutdown") for t in tunnels))
