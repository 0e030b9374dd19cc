"""Consistent characters: personas a flow's consistentCharacter node can use."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.schemas.characters import CharacterCreate, CharacterUpdate
from app.core.bus import EventBus
from app.core.di import Registry
from app.core.errors import Unprocessable
from app.core.events import Event, EventTypes
from app.models import ConsistentCharacter, Project, User
from app.modules.common import get_owned


class CharacterManager:
    def __init__(self, registry: Registry) -> None:
        self._bus = registry.get(EventBus)

    async def _emit(self, session: AsyncSession, event_type: str, c: ConsistentCharacter) -> None:
        await self._bus.emit_in(session, Event(
            event_type, {"character_id": str(c.id), "name": c.name}, user_id=c.user_id,
            project_id=c.project_id))

    async def create(self, session: AsyncSession, user: User,
                     data: CharacterCreate) -> ConsistentCharacter:
        if data.project_id is not None:
            await get_owned(session, Project, data.project_id, user.id, "project")
        character = ConsistentCharacter(name=data.name, persona=data.persona,
                                        project_id=data.project_id, user_id=user.id)
        session.add(character)
        await session.flush()
        await self._emit(session, EventTypes.CHARACTER_CREATED, character)
        return character

    async def list_for(self, session: AsyncSession, user: User,
                       project_id: int | None) -> Sequence[ConsistentCharacter]:
        query = select(ConsistentCharacter).where(ConsistentCharacter.user_id == user.id)
        if project_id is not None:
            query = query.where(ConsistentCharacter.project_id == project_id)
        return (await session.execute(
            query.order_by(ConsistentCharacter.created_at, ConsistentCharacter.id)
        )).scalars().all()

    async def get(self, session: AsyncSession, user: User,
                  character_id: uuid.UUID) -> ConsistentCharacter:
        return await get_owned(session, ConsistentCharacter, character_id, user.id, "character")

    async def update(self, session: AsyncSession, user: User, character_id: uuid.UUID,
                     data: CharacterUpdate) -> ConsistentCharacter:
        character = await self.get(session, user, character_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("project_id") is not None:
            await get_owned(session, Project, changes["project_id"], user.id, "project")
        for key, value in changes.items():
            if key in ("name", "persona") and value is None:
                raise Unprocessable(f"{key} cannot be null", details=[{"field": key}])
            setattr(character, key, value)
        await session.flush()
        await self._emit(session, EventTypes.CHARACTER_UPDATED, character)
        return character

    async def delete(self, session: AsyncSession, user: User, character_id: uuid.UUID) -> None:
        character = await self.get(session, user, character_id)
        await self._emit(session, EventTypes.CHARACTER_DELETED, character)
        await session.delete(character)
        await session.flush()


manager_class = CharacterManager
