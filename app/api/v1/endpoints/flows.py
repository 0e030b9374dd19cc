from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import Query, Response, status

from app.api.auth import CurrentUser
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.common import INT_ID_MAX
from app.api.v1.schemas.flows import FlowCreate, FlowOut, FlowUpdate
from app.models import Flow
from app.modules.flows.manager import FlowManager

router = api_router(prefix="/flows", tags=["flows"])


@router.post("", response_model=FlowOut, status_code=status.HTTP_201_CREATED,
             responses=errors(404))
async def create_flow(body: FlowCreate, user: CurrentUser, session: SessionDep,
                      flows: FlowManager = manager(FlowManager)) -> Flow:
    return await flows.create(session, user, body)


@router.get("", response_model=list[FlowOut])
async def list_flows(user: CurrentUser, session: SessionDep,
                     project_id: Annotated[int | None, Query(ge=1, le=INT_ID_MAX)] = None,
                     flows: FlowManager = manager(FlowManager)) -> Sequence[Flow]:
    return await flows.list_for(session, user, project_id)


@router.get("/{flow_id}", response_model=FlowOut, responses=errors(404))
async def get_flow(flow_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                   flows: FlowManager = manager(FlowManager)) -> Flow:
    return await flows.get(session, user, flow_id)


@router.put("/{flow_id}", response_model=FlowOut, responses=errors(404))
@router.patch("/{flow_id}", response_model=FlowOut, responses=errors(404))
async def update_flow(flow_id: uuid.UUID, body: FlowUpdate, user: CurrentUser,
                      session: SessionDep, flows: FlowManager = manager(FlowManager)) -> Flow:
    return await flows.update(session, user, flow_id, body)


@router.delete("/{flow_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_flow(flow_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                      flows: FlowManager = manager(FlowManager)) -> Response:
    await flows.delete(session, user, flow_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
