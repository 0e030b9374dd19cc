from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.v1.schemas.common import ProviderIdStr


class RunRequest(BaseModel):
    """`POST /execution/run` and the tunnel's `execution.start` (DESIGN.md §3)."""

    model_config = ConfigDict(extra="forbid")

    flow_id: uuid.UUID | None = None
    nodes: list[Any] | None = None
    edges: list[Any] | None = None
    viewport: dict[str, Any] | None = None
    provider_id: ProviderIdStr | None = None
    trigger_node_id: str | None = Field(default=None, max_length=200)
    cached_outputs: dict[str, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RunRequest:
        if self.flow_id is None and self.nodes is None:
            raise ValueError("give either flow_id or nodes (and edges)")
        if self.flow_id is not None and self.nodes is not None:
            raise ValueError("give flow_id or nodes, not both")
        return self


class RunWarning(BaseModel):
    """Something the run ignored (DESIGN.md §3): a node `data` key that nothing reads."""

    node_id: str
    code: Literal["unknown_config_key"]
    key: str


class RunAccepted(BaseModel):
    run_id: uuid.UUID
    status: str
    warnings: list[RunWarning] = Field(default_factory=list)
