from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.openapi import errors
from app.api.routing import api_router
from app.core.config import Settings

router = api_router(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready", response_model=None, responses=errors(503))
async def ready(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse(
            {"error": {"code": "unavailable",
                       "message": f"database unreachable: {type(exc).__name__}",
                       "details": None, "request_id": request.state.request_id}},
            status_code=503)
    settings: Settings = request.app.state.settings
    body: dict[str, Any] = {"status": "ready", "database": "ok",
                            "mode": settings.EXECUTION_MODE}
    if settings.EXECUTION_MODE == "queue":
        body.update(await _queue_state(request, settings))
    return body


async def _queue_state(request: Request, settings: Settings) -> dict[str, Any]:
    """Queue mode (DESIGN.md §10): the workers seen within a lease, and the runs waiting for
    one (queued, not yet claimed) with the age of the oldest."""
    async with request.app.state.engine.connect() as conn:
        workers = (await conn.execute(text(
            "SELECT count(*), coalesce(sum(concurrency), 0), coalesce(sum(running), 0) "
            "FROM workers WHERE seen_at > now() - make_interval(secs => :lease)"),
            {"lease": settings.RUN_LEASE_S})).one()
        queued = (await conn.execute(text(
            "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM runs "
            "WHERE status = 'queued' AND lease_expires_at IS NULL"))).one()
    return {"workers": {"seen": workers[0], "slots": int(workers[1]),
                        "running": int(workers[2])},
            "queue": {"depth": queued[0],
                      "oldest_age_s": round(float(queued[1]), 3) if queued[1] is not None
                      else None}}
