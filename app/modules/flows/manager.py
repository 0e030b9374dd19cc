"""Flows: the builder's graphs, stored exactly as sent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.schemas.flows import FlowCreate, FlowUpdate
from app.core.bus import EventBus
from app.core.config import PROVIDER_IDS
from app.core.di import Registry
from app.core.errors import Unprocessable
from app.core.events import Event, EventTypes
from app.models import Flow, Project, User
from app.modules.common import get_owned


def check_provider(provider_id: str | None) -> None:
    if provider_id is not None and provider_id not in PROVIDER_IDS:
        raise Unprocessable(f"unknown provider {provider_id!r}", code="unknown_provider",
                            details={"known": list(PROVIDER_IDS)})


class FlowManager:
    def __init__(self, registry: Registry) -> None:
        self._bus = registry.get(EventBus)

    async def create(self, session: AsyncSession, user: User, data: FlowCreate) -> Flow:
        check_provider(data.provider_id)
        if data.project_id is not None:
            await get_owned(session, Project, data.project_id, user.id, "project")
        flow = Flow(name=data.name, description=data.description, graph_data=data.graph_data,
                    provider_id=data.provider_id, project_id=data.project_id, user_id=user.id)
        session.add(flow)
        await session.flush()
        await self._emit(session, EventTypes.FLOW_CREATED, flow)
        return flow

    async def _emit(self, session: AsyncSession, event_type: str, flow: Flow) -> None:
        await self._bus.emit_in(session, Event(
            event_type, {"flow_id": str(flow.id), "name": flow.name},
            user_id=flow.user_id, project_id=flow.project_id, flow_id=flow.id))

    async def list_for(self, session: AsyncSession, user: User,
                       project_id: int | None) -> Sequence[Flow]:
        query = select(Flow).where(Flow.user_id == user.id)
        if project_id is not None:
            query = query.where(Flow.project_id == project_id)
        return (await session.execute(query.order_by(Flow.created_at, Flow.id))).scalars().all()

    async def get(self, session: AsyncSession, user: User, flow_id: uuid.UUID) -> Flow:
        return await get_owned(session, Flow, flow_id, user.id, "flow")

    async def update(self, session: AsyncSession, user: User, flow_id: uuid.UUID,
                     data: FlowUpdate) -> Flow:
        flow = await self.get(session, user, flow_id)
        changes = data.model_dump(exclude_unset=True)
        if "provider_id" in changes:
            check_provider(changes["provider_id"])
        if changes.get("project_id") is not None:
            await get_owned(session, Project, changes["project_id"], user.id, "project")
        for key, value in changes.items():
            if key in ("name", "graph_data") and value is None:
                raise Unprocessable(f"{key} cannot be null", details=[{"field": key}])
            setattr(flow, key, value)
        await session.flush()
        await self._emit(session, EventTypes.FLOW_UPDATED, flow)
        return flow

    async def delete(self, session: AsyncSession, user: User, flow_id: uuid.UUID) -> None:
        flow = await self.get(session, user, flow_id)
        await self._emit(session, EventTypes.FLOW_DELETED, flow)
        await session.delete(flow)
        await session.flush()


manager_class = FlowManager
