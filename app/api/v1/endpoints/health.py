from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.openapi import errors
from app.api.routing import api_router

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
    return {"status": "ready", "database": "ok"}
