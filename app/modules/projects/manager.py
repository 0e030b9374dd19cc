"""Projects: a user's folders for flows and characters."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.schemas.projects import ProjectCreate
from app.core.bus import EventBus
from app.core.di import Registry
from app.core.errors import NotFound
from app.core.events import Event, EventTypes
from app.models import Project, User
from app.modules.common import get_owned


class ProjectManager:
    def __init__(self, registry: Registry) -> None:
        self._bus = registry.get(EventBus)

    async def create(self, session: AsyncSession, user: User, data: ProjectCreate) -> Project:
        project = Project(name=data.name, description=data.description, user_id=user.id)
        session.add(project)
        await session.flush()
        await self._bus.emit_in(session, Event(
            EventTypes.PROJECT_CREATED, {"project_id": project.id, "name": project.name},
            user_id=user.id, project_id=project.id))
        return project

    async def list_for(self, session: AsyncSession, user_id: int) -> Sequence[Project]:
        return (await session.execute(
            select(Project).where(Project.user_id == user_id).order_by(Project.id)
        )).scalars().all()

    async def select_for(self, session: AsyncSession, user_id: int, *, viewer_id: int | None,
                         is_admin: bool) -> Sequence[Project]:
        if not is_admin and user_id != viewer_id:
            raise NotFound("user not found")
        return await self.list_for(session, user_id)

    async def get(self, session: AsyncSession, user: User, project_id: int) -> Project:
        return await get_owned(session, Project, project_id, user.id, "project")

    async def delete(self, session: AsyncSession, user: User, project_id: int) -> None:
        project = await self.get(session, user, project_id)
        # The event first: its project_id FK must point at a live row when inserted.
        await self._bus.emit_in(session, Event(
            EventTypes.PROJECT_DELETED, {"project_id": project.id}, user_id=user.id,
            project_id=project.id))
        await session.delete(project)
        await session.flush()


manager_class = ProjectManager
