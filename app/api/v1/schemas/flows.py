from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.v1.schemas.common import IntId, NotNull, ProviderIdStr, Strict, optional_not_null


class FlowCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    # Stored as sent: React Flow's toObject() plus whatever keys the builder adds.
    graph_data: dict[str, Any] = Field(default_factory=lambda: {"nodes": [], "edges": []})
    provider_id: ProviderIdStr | None = None
    project_id: IntId | None = None


class FlowUpdate(Strict):
    name: Annotated[str | None, NotNull] = optional_not_null(min_length=1, max_length=200)
    description: Annotated[str | None, NotNull] = optional_not_null(max_length=10_000)
    graph_data: Annotated[dict[str, Any] | None, NotNull] = optional_not_null()
    provider_id: ProviderIdStr | None = None
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
