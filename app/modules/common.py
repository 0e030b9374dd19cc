"""Small helpers every domain manager shares."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound

M = TypeVar("M")


async def get_owned(session: AsyncSession, model: type[M], key: Any, user_id: int,
                    what: str) -> M:
    """The row if it exists AND belongs to `user_id`; otherwise the same 404 either way, so
    a foreign id leaks nothing about its existence."""
    row = (await session.execute(
        select(model).where(model.id == key, model.user_id == user_id)  # type: ignore[attr-defined]
    )).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} not found")
    return row
