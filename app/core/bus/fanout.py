"""Cross-process fan-out for queue mode (DESIGN.md §10): wake-up hints on PostgreSQL NOTIFY.

The log stays the only source of truth. A transaction that writes events also sends, for
each event, a hint on `cascade_events`: `user_id:user_seq:message` (the event's message as
the tunnel sends it) when that fits a notification, else the pointer `user_id:user_seq`.
PostgreSQL delivers hints only if the transaction commits, in commit order. Each API replica
offers a message to the user's local tunnels under its cursor, and turns a pointer into a
nudge; a tunnel drops what it already sent and reads anything missing from the log with the
gap-filling catch-up it already uses (app/core/ws/tunnel.py). Carrying the message spares
each replica a log read per batch: in A/B runs of the queue benchmark's load (part 9) it cut
hint-to-tunnel p99 from 157 to about 55 ms and the API's CPU per run by a fifth. A hint that
never arrives (the listener was down) is covered by a catch-up of every local user on
reconnection and by a safety poll of the users' counters.

Token deltas (`execution.node.stream`) are ephemeral: they are not in the log, so they ride
the notification itself, on `cascade_stream`, as `user_id:serial:message`. A NOTIFY payload is
capped at 8,000 bytes: a longer delta is cut into several messages (clients concatenate
deltas). The serial keeps equal deltas of one transaction distinct (PostgreSQL folds
identical notifications of a transaction into one). A delta sent while a replica's listener
is down is lost, as a delta to a closed tunnel is: the node's output event carries the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db.bulk import Bulk, PostgresBulk
from app.core.db.listener import PgListener
from app.core.events.model import Event
from app.core.ws.manager import ConnectionManager
from app.core.ws.messages import encode
from app.core.ws.tunnel import text_bytes
from app.models.user import User

logger = logging.getLogger("cascade.fanout")

HINT_CHANNEL = "cascade_events"
STREAM_CHANNEL = "cascade_stream"
# PostgreSQL refuses a payload of 8,000 bytes or more; the prefix and the JSON envelope
# around a delta take the rest of the margin.
MAX_PAYLOAD_BYTES = 7900
_DELTA_PIECE_BYTES = 6000
_USERS = cast(Table, User.__table__)
_NOTIFY_SQL = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"
_serials = itertools.count()


def hints_for(events: Sequence[Event]) -> list[tuple[str, str]]:
    """(channel, payload) to send for a committed batch, in the batch's order: one hint per
    logged event (its message inside when it fits, else a pointer) and the deltas between."""
    out: list[tuple[str, str]] = []
    for event in events:
        if not event.persisted:
            out.extend((STREAM_CHANNEL, f"{event.user_id}:{next(_serials)}:{text}")
                       for text in _ephemeral_messages(event))
        elif event.user_seq is not None:
            head = f"{event.user_id}:{event.user_seq}"
            text = encode(event.to_message())
            out.append((HINT_CHANNEL, f"{head}:{text}" if text_bytes(text) <= MAX_PAYLOAD_BYTES
                        else head))
    return out


def _ephemeral_messages(event: Event) -> list[str]:
    text = encode(event.to_message())
    if text_bytes(text) <= MAX_PAYLOAD_BYTES:
        return [text]
    delta = event.payload.get("delta")
    if not isinstance(delta, str):
        logger.warning("dropping a %s message of %d bytes: too large for a notification",
                       event.type, len(text))
        return []
    pieces = []
    for start in range(0, len(delta), _DELTA_PIECE_BYTES // 4):  # ≤ 4 UTF-8 bytes a char
        piece = Event(event.type, {**event.payload, "delta": delta[start:start
                                                                 + _DELTA_PIECE_BYTES // 4]},
                      user_id=event.user_id, project_id=event.project_id,
                      run_id=event.run_id, flow_id=event.flow_id)
        pieces.append(encode(piece.to_message()))
    return pieces


async def publish_hints(bulk: Bulk, events: Sequence[Event]) -> None:
    """Send the batch's hints inside its transaction (delivered at commit, or never)."""
    hints = hints_for(events)
    if not hints:
        return
    if not isinstance(bulk, PostgresBulk):
        raise RuntimeError("wake-up hints need PostgreSQL (queue mode)")
    await bulk.driver.execute(_NOTIFY_SQL, [c for c, _ in hints], [p for _, p in hints])


class TunnelFanout:
    """One API replica's side: hints and deltas from the listener to its local tunnels."""

    def __init__(self, connections: ConnectionManager,
                 sessionmaker: async_sessionmaker[AsyncSession], database_url: str, *,
                 poll_s: float, name: str) -> None:
        self._connections = connections
        self._sessionmaker = sessionmaker
        self._poll_s = poll_s
        self.listener = PgListener(
            database_url, {HINT_CHANNEL: self._on_hint, STREAM_CHANNEL: self._on_stream},
            name=name, on_connect=self.catch_up_all)
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.listener.start()
        self._poller = asyncio.create_task(self._poll(), name="fanout-safety-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.listener.stop()

    def _on_hint(self, payload: str) -> None:
        user_id, _, rest = payload.partition(":")
        seq, _, text = rest.partition(":")
        if text:  # the event itself: tunnels take it in cursor order, a gap reads the log
            self._connections.send_text_to_user(int(user_id), text, int(seq))
        else:
            self._connections.nudge(int(user_id), int(seq))

    def _on_stream(self, payload: str) -> None:
        user_id, _, rest = payload.partition(":")
        _serial, _, text = rest.partition(":")
        self._connections.send_text_to_user(int(user_id), text)

    async def catch_up_all(self) -> None:
        """Nudge every local user's tunnels to the user's last committed cursor."""
        user_ids = self._connections.user_ids()
        if not user_ids:
            return
        async with self._sessionmaker() as session:
            rows: Any = (await session.execute(
                select(_USERS.c.id, _USERS.c.last_event_seq)
                .where(_USERS.c.id.in_(user_ids)))).all()
        for user_id, seq in rows:
            self._connections.nudge(user_id, int(seq))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.catch_up_all()
            except Exception as exc:  # the database is away: the next poll tries again
                logger.warning("fan-out safety poll failed: %s", exc)
