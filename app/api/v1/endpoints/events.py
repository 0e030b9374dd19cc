from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Header, Query, Request
from fastapi.responses import StreamingResponse

from app.api.auth import PrincipalDep
from app.api.deps import SessionDep, SettingsDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.common import INT_ID_MAX, Instant
from app.core.errors import Forbidden
from app.modules.events.manager import EventFilter, EventLogManager, row_to_dict

router = api_router(prefix="/events", tags=["events"])

NDJSON = "application/x-ndjson"


def _utc(value: datetime | None) -> datetime | None:
    """since/until as UTC: SQLite compares the stored UTC text, so an instant given with
    another offset must be converted first; one given without an offset is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 is before the first UTC instant we hold
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else \
            datetime.max.replace(tzinfo=UTC)


@router.get("", response_model=None, responses={
    **errors(400),
    200: {"description": "A page of events; with `Accept: application/x-ndjson`, every\n"
                         "matching event as one JSON object per line",
          "content": {"application/json": {}, NDJSON: {}}}})
async def list_events(
    request: Request, principal: PrincipalDep, session: SessionDep, settings: SettingsDep,
    run_id: uuid.UUID | None = None, flow_id: uuid.UUID | None = None,
    type: Annotated[str | None, Query(max_length=100, description="exact or prefix (flow.*)")]
    = None,
    since: Instant | None = None, until: Instant | None = None,
    user_id: Annotated[int | None, Query(ge=1, le=INT_ID_MAX,
                                         description="admins: one user's events")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    accept: Annotated[str | None, Header()] = None,
    events: EventLogManager = manager(EventLogManager),
) -> dict[str, Any] | StreamingResponse:
    """The event log, oldest first. Users see their own events; admins see everyone's."""
    if user_id is not None and not principal.is_admin:
        raise Forbidden("only admins may read another user's events")
    viewer = None if principal.is_admin else principal.user.id  # type: ignore[union-attr]
    filters = EventFilter(run_id=run_id, flow_id=flow_id, type_prefix=type, since=_utc(since),
                          until=_utc(until), user_id=user_id)
    if accept and NDJSON in accept:
        return StreamingResponse(
            events.export(request.app.state.sessionmaker, viewer_id=viewer, filters=filters),
            media_type=NDJSON)
    rows, next_cursor = await events.page(
        session, viewer_id=viewer, filters=filters, after=cursor,
        limit=min(limit, settings.EVENTS_PAGE_MAX))
    return {"items": [row_to_dict(r) for r in rows], "next_cursor": next_cursor}
