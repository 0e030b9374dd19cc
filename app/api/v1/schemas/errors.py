"""The one error shape (DESIGN.md §3), as a model for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="snake_case, stable")
    message: str = Field(min_length=1, description="for people; may change")
    details: Any = Field(description="structured detail (a list of problems for 422), or null")
    request_id: str = Field(description="also in the X-Request-ID response header")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorBody
