from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.v1.schemas.common import IntId, Strict
from app.core.config import PROVIDER_IDS

ProviderId = Field(default=None, json_schema_extra={"enum": list(PROVIDER_IDS)})


class FlowCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    # Stored as sent: React Flow's toObject() plus whatever keys the builder adds.
    graph_data: dict[str, Any] = Field(default_factory=lambda: {"nodes": [], "edges": []})
    provider_id: str | None = ProviderId
    project_id: IntId | None = None


class FlowUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    graph_data: dict[str, Any] | None = None
    provider_id: str | None = ProviderId
    project_id: IntId | None = None


class FlowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    graph_data: dict[str, Any]
    provider_id: str | None
    project_id: int | None
    user_id: int
    created_at: datetime
    updated_at: datetime
