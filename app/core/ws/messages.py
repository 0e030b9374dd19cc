"""The tunnel envelope and close codes (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.json_codec import dumps


class WSMessage(BaseModel):
    """What a client sends: `{"type": "domain.action", "data": {...}, "request_id"?}`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = Field(default=None, max_length=200)


class CloseCode:
    NORMAL = 1000
    GOING_AWAY = 1001
    TOO_BIG = 1009
    UNAUTHORIZED = 4001  # missing/expired/malformed token, or it expired during the session
    FORBIDDEN_ORIGIN = 4003
    IDLE = 4408  # the client sent nothing for WS_IDLE_TIMEOUT_S
    SLOW_CONSUMER = 4409  # the send queue overflowed; resume from your cursor
    TOO_MANY_TUNNELS = 4429


def encode(message: dict[str, Any]) -> str:
    return dumps(message)


def error_message(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"code": code, "message": message}
    if request_id is not None:
        data["request_id"] = request_id
    return {"type": "error", "data": data}
