"""The execution module's tunnel side: `execution.start` and `execution.cancel` messages.

Run events reach tunnels through the bus bridge (app/modules/realtime/handlers.py); the
runner itself never imports the WebSocket layer.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.v1.schemas.execution import RunRequest
from app.core.db.hooks import run_after_commit
from app.core.di import Registry
from app.core.errors import AppError
from app.core.ws import ConnectionManager, Tunnel, error_message
from app.models import User

if TYPE_CHECKING:
    from app.modules.execution.manager import ExecutionManager


def _reply_error(tunnel: Tunnel, exc: AppError, request_id: str | None) -> None:
    message = error_message(exc.code, exc.message, request_id)
    if exc.details is not None:
        message["data"]["details"] = exc.details
    tunnel.send_message(message)


def _split_request_id(data: dict[str, Any],
                      request_id: str | None) -> tuple[dict[str, Any], str | None]:
    """DESIGN.md §4: `execution.start` is "the REST body plus an optional request_id", so a
    client may put request_id inside `data` as well as in the envelope; either is echoed."""
    if "request_id" not in data:
        return data, request_id
    data = dict(data)
    inner = data.pop("request_id")
    if request_id is None and isinstance(inner, str):
        request_id = inner
    return data, request_id


async def _tunnel_user(session: AsyncSession, tunnel: Tunnel) -> User:
    user = await session.get(User, tunnel.user_id)
    if user is None:
        raise AppError("account not found", code="unauthorized", status_code=401)
    return user


def _accepted(message_type: str, run_id: uuid.UUID, status: str, request_id: str | None,
              **extra: Any) -> dict[str, Any]:
    return {"type": message_type,
            "data": {"run_id": str(run_id), "status": status, "request_id": request_id,
                     **extra}}


def register_tunnel_handlers(registry: Registry, execution: ExecutionManager) -> None:
    sessionmaker: async_sessionmaker[AsyncSession] = registry.get(async_sessionmaker)
    connections = registry.get(ConnectionManager)

    async def start(tunnel: Tunnel, data: dict[str, Any], request_id: str | None) -> None:
        data, request_id = _split_request_id(data, request_id)
        try:
            request = RunRequest.model_validate(data)
        except ValidationError as exc:
            details = [{"field": ".".join(str(p) for p in e.get("loc", ())),
                        "message": e.get("msg", "")} for e in exc.errors()]
            _reply_error(tunnel, AppError("the request is not valid", code="validation_error",
                                          details=details), request_id)
            return
        try:
            async with sessionmaker() as session:
                accepted = await execution.start(session, await _tunnel_user(session, tunnel),
                                                 request)
                await session.commit()
                run_after_commit(session)
        except AppError as exc:
            _reply_error(tunnel, exc, request_id)
            return
        tunnel.send_message(_accepted("execution.accepted", accepted.run_id, accepted.status,
                                      request_id, warnings=accepted.warnings))

    async def cancel(tunnel: Tunnel, data: dict[str, Any], request_id: str | None) -> None:
        data, request_id = _split_request_id(data, request_id)
        try:
            run_id = uuid.UUID(str(data.get("run_id")))
        except ValueError:
            _reply_error(tunnel, AppError("run_id must be a run's uuid", code="validation_error"),
                         request_id)
            return
        try:
            async with sessionmaker() as session:
                run = await execution.cancel(session, await _tunnel_user(session, tunnel), run_id)
        except AppError as exc:
            _reply_error(tunnel, exc, request_id)
            return
        tunnel.send_message(_accepted("execution.cancel.accepted", run.id, run.status,
                                      request_id))

    connections.handle("execution.start", start)
    connections.handle("execution.cancel", cancel)
