"""The append-only event log (DESIGN.md §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db.base import Base, utcnow


class EventLog(Base):
    __tablename__ = "event_logs"
    __table_args__ = (
        UniqueConstraint("user_id", "user_seq"),
        UniqueConstraint("run_id", "run_seq"),
        Index("ix_event_logs_event_name_created_at", "event_name", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_name: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), default=None
    )
    run_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    # The run's (or flow event's) flow, kept here without a foreign key: the audit trail of a
    # flow's runs must survive the flow's deletion (runs.flow_id is nulled then).
    flow_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    run_seq: Mapped[int | None] = mapped_column(default=None)
    user_seq: Mapped[int] = mapped_column(BigInteger)
    session_id: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
