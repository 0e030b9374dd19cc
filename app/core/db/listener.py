"""A PostgreSQL LISTEN connection that stays up: reconnects with backoff, says when it is back.

Queue mode (DESIGN.md §10) hangs two things on notifications: each API replica's tunnels
(wake-up hints from whichever process wrote events) and each worker's cancels. A notification
sent while the listener is down is lost for good, so every user of this class keeps a
fallback poll and catches up in `on_connect`, which runs after every (re)connection, once
its channels are listened to (so nothing sent after the catch-up's read is missed).

The connection is a plain asyncpg connection, not one of the pool's: it is held for the life
of the process and must not be handed to a request. Its `application_name` names it, so an
operator (or a test) finds it in `pg_stat_activity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger("cascade.listener")

Callback = Callable[[str], None]  # the notification's payload; must not block


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (`postgresql+asyncpg://…`)."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PgListener:
    def __init__(self, database_url: str, channels: Mapping[str, Callback], *, name: str,
                 on_connect: Callable[[], Awaitable[None]] | None = None,
                 backoff_s: tuple[float, float] = (0.1, 5.0)) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channels = dict(channels)
        self.name = name
        self._on_connect = on_connect
        self._backoff = backoff_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listener-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay, first = self._backoff[0], True
        while True:
            lost = asyncio.Event()
            connection: Any = None
            try:
                connection = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": self.name})
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel, callback in self._channels.items():
                    await connection.add_listener(channel, _deliver(callback))
                if not first:
                    logger.warning("listener %s reconnected", self.name)
                if self._on_connect is not None:
                    await self._on_connect()
                first, delay = False, self._backoff[0]
                while not lost.is_set() and not connection.is_closed():
                    # The termination callback covers a server-side close; the poll covers a
                    # socket that died without telling asyncpg.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 1.0)
                logger.warning("listener %s lost its connection", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("listener %s: %s; retrying in %.1f s", self.name, exc, delay)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])


def _deliver(callback: Callback) -> Callable[[Any, int, str, str], None]:
    def on_notification(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            callback(payload)
        except Exception:
            logger.exception("notification callback failed on %r", payload[:200])
    return on_notification
