"""The Event: what happened, to whom; sequence numbers are filled in when it is persisted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.core.events.types import EventTypes


@dataclass(slots=True)
class Event:
    type: str
    payload: dict[str, Any]
    user_id: int
    project_id: int | None = None
    run_id: uuid.UUID | None = None
    session_id: str | None = None
    flow_id: uuid.UUID | None = None
    # Set by the event log when the event is written.
    id: uuid.UUID | None = None
    user_seq: int | None = None
    run_seq: int | None = None
    created_at: datetime | None = None
    # State changes that must commit in the same transaction as this event (runner only).
    state: list[Any] = field(default_factory=list, repr=False)
    # The run attempt its writer holds (queue mode, DESIGN.md §10): the write is refused
    # unless the run's `attempt` still equals it. None: not fenced (inline mode, the API).
    fence: int | None = None

    def __post_init__(self) -> None:
        if self.type not in EventTypes.KNOWN:
            raise ValueError(f"unknown event type {self.type!r}")

    @property
    def persisted(self) -> bool:
        return self.type in EventTypes.PERSISTED

    def to_message(self) -> dict[str, Any]:
        """The tunnel envelope (DESIGN.md §4)."""
        data = dict(self.payload)
        if self.run_id is not None:
            data["run_id"] = str(self.run_id)
            if self.run_seq is not None:
                data["run_seq"] = self.run_seq
        message: dict[str, Any] = {"type": self.type, "data": data}
        if self.user_seq is not None:
            message["cursor"] = self.user_seq
        if self.created_at is not None:
            message["ts"] = self.created_at.isoformat()
        return message
