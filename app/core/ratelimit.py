"""Counting login failures in a sliding window, per identifier and per client address."""

from __future__ import annotations

import time
from collections import deque


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
