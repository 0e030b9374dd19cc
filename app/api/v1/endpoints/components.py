from __future__ import annotations

from typing import Any

from app.api.auth import CurrentUser
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.modules.components.manager import ComponentManager

router = api_router(prefix="/components", tags=["components"])


@router.get("")
async def list_components(_user: CurrentUser, session: SessionDep,
                          components: ComponentManager = manager(ComponentManager)
                          ) -> list[dict[str, Any]]:
    return await components.list(session)


@router.get("/{component_type}", responses=errors(404))
async def get_component(component_type: str, _user: CurrentUser, session: SessionDep,
                        components: ComponentManager = manager(ComponentManager)
                        ) -> dict[str, Any]:
    return await components.get(session, component_type)
