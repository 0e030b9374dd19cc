"""Counting login failures in a sliding window, per identifier and per client address:
in memory (inline mode), or in the database that every replica shares (queue mode)."""

from __future__ import annotations

import time
from collections import deque
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db.base import utcnow
from app.models.worker import LoginFailure


class FailureLimiter:
    def __init__(self, max_failures: int, window_s: float = 60.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        window = self._failures.get(key)
        if window is None:
            return deque()
        while window and now - window[0] > self.window_s:
            window.popleft()
        if not window:
            del self._failures[key]
        return window

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until an attempt is allowed again, or None if it is allowed now."""
        now = time.monotonic()
        waits = []
        for key in keys:
            window = self._recent(key, now)
            if len(window) >= self.max_failures:
                waits.append(self.window_s - (now - window[0]))
        return max(1, int(max(waits)) + 1) if waits else None

    def record_failure(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)


class Limiter(Protocol):
    """A failure budget per key in a sliding window, as the login path uses it."""

    async def retry_after(self, *keys: str) -> int | None: ...

    async def record_failure(self, *keys: str) -> None: ...


class MemoryLimiter:
    """One process's budgets (inline mode: the process is the whole service)."""

    def __init__(self, max_failures: int, window_s: float = 60.0) -> None:
        self._limiter = FailureLimiter(max_failures, window_s)

    async def retry_after(self, *keys: str) -> int | None:
        return self._limiter.retry_after(*keys)

    async def record_failure(self, *keys: str) -> None:
        self._limiter.record_failure(*keys)


class DatabaseLimiter:
    """Budgets every replica shares (queue mode, DESIGN.md §10): a row per failure in
    `login_failures`, counted over the window. Two replicas checking at the same instant
    may both let one more attempt through; the budget is a brake, not a lock.
    Rows older than the window are deleted once a window, by whichever replica records."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_failures: int,
                 window_s: float = 60.0) -> None:
        self._sessionmaker = sessionmaker
        self.max_failures = max_failures
        self.window_s = window_s
        self._last_purge = 0.0

    async def retry_after(self, *keys: str) -> int | None:
        now = utcnow()
        since = now - timedelta(seconds=self.window_s)
        async with self._sessionmaker() as session:
            rows = (await session.execute(
                select(LoginFailure.key, func.count(), func.min(LoginFailure.at))
                .where(LoginFailure.key.in_(keys), LoginFailure.at > since)
                .group_by(LoginFailure.key))).all()
        waits = [self.window_s - (now - oldest).total_seconds()
                 for _key, count, oldest in rows if count >= self.max_failures]
        return max(1, int(max(waits)) + 1) if waits else None

    async def record_failure(self, *keys: str) -> None:
        now = utcnow()
        async with self._sessionmaker() as session, session.begin():
            await session.execute(insert(LoginFailure), [{"key": k, "at": now} for k in keys])
            if time.monotonic() - self._last_purge > self.window_s:
                self._last_purge = time.monotonic()
                await session.execute(delete(LoginFailure).where(
                    LoginFailure.at < now - timedelta(seconds=self.window_s)))
