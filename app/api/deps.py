"""`Annotated` dependency aliases that keep endpoint signatures short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.bus import EventBus
from app.core.config import Settings
from app.core.db.hooks import run_after_commit, run_after_rollback
from app.core.di import Registry

T = TypeVar("T")


# `async def` on purpose: a plain `def` dependency runs in the threadpool, a thread hop per
# request for a dictionary lookup.
async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_settings_dep(registry: RegistryDep) -> Settings:
    return registry.get(Settings)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit on success, roll back on error. Events written
    with `bus.emit_in` are dispatched after the commit (the response waits for both)."""
    registry: Registry = request.app.state.registry
    bus = registry.get(EventBus)
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            bus.discard_uncommitted(session)
            run_after_rollback(session)
            raise
        run_after_commit(session)
        await bus.dispatch_committed(session)


# scope="function": the commit and the dispatch run before the response is sent. FastAPI's
# default for a yield dependency ("request") runs them after, so a client could get 201
# for a write that is not committed yet (or that then fails to commit).
SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


def manager(cls: type[T]) -> Any:
    """`Depends(manager(ProjectManager))`: the singleton from the registry."""

    async def get(registry: RegistryDep) -> T:
        return registry.get(cls)

    return Depends(get)
