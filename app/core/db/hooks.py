"""Work that must wait for a transaction's outcome (start a run only once its row is
committed). Whoever commits the session calls `run_after_commit` / `run_after_rollback`."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

_AFTER_COMMIT = "cascade_after_commit"
_AFTER_ROLLBACK = "cascade_after_rollback"


def after_commit(session: AsyncSession, callback: Callable[[], None],
                 on_rollback: Callable[[], None] | None = None) -> None:
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)
    if on_rollback is not None:
        session.info.setdefault(_AFTER_ROLLBACK, []).append(on_rollback)


def run_after_commit(session: AsyncSession) -> None:
    session.info.pop(_AFTER_ROLLBACK, None)
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


def run_after_rollback(session: AsyncSession) -> None:
    session.info.pop(_AFTER_COMMIT, None)
    for callback in session.info.pop(_AFTER_ROLLBACK, []):
        callback()
