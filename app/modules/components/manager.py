"""The read-only component catalog."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.di import Registry
from app.core.errors import NotFound
from app.models import AgenticComponent
from app.modules.components.catalog import entry_from_row


class ComponentManager:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def list(self, session: AsyncSession) -> list[dict[str, Any]]:
        rows = (await session.execute(
            select(AgenticComponent).order_by(AgenticComponent.category, AgenticComponent.type)
        )).scalars().all()
        return [entry_from_row(row) for row in rows]

    async def get(self, session: AsyncSession, type_: str) -> dict[str, Any]:
        row = (await session.execute(
            select(AgenticComponent).where(AgenticComponent.type == type_)
        )).scalar_one_or_none()
        if row is None:
            raise NotFound("component not found")
        return entry_from_row(row)


manager_class = ComponentManager
