from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.v1.schemas.common import IntId, NotNull, Strict, optional_not_null


class CharacterCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    persona: dict[str, Any] = Field(default_factory=dict)
    project_id: IntId | None = None


class CharacterUpdate(Strict):
    name: Annotated[str | None, NotNull] = optional_not_null(min_length=1, max_length=200)
    persona: Annotated[dict[str, Any] | None, NotNull] = optional_not_null()
    project_id: IntId | None = None


class CharacterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    persona: dict[str, Any]
    project_id: int | None
    user_id: int
    created_at: datetime
    updated_at: datetime
