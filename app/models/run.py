"""Runs and their per-node state. Changed only together with the event announcing it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db.base import Base, utcnow


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_user_id_created_at", "user_id", "created_at"),
        # Admission counts a user's active runs under the user's row lock (DESIGN.md §10):
        # a partial index keeps that count small however many runs the user has had.
        Index("ix_runs_active_user_id", "user_id",
              postgresql_where=text("status IN ('queued', 'running')"),
              sqlite_where=text("status IN ('queued', 'running')")),
        # Workers look for active runs whose lease ran out.
        Index("ix_runs_lease_expires_at", "lease_expires_at",
              postgresql_where=text("status IN ('queued', 'running')"),
              sqlite_where=text("status IN ('queued', 'running')")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    flow_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("flows.id", ondelete="SET NULL"), index=True, default=None
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), index=True)
    trigger_node_id: Mapped[str | None] = mapped_column(String(200), default=None)
    graph: Mapped[dict[str, Any]]
    provider_id: Mapped[str] = mapped_column(String(32))
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    tokens_input: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_output: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Last `run_seq` handed out for this run's events (see User.last_event_seq).
    last_event_seq: Mapped[int] = mapped_column(default=0, server_default="0")
    # Queue mode (DESIGN.md §10). `attempt` is the fencing token: raised at each pick-up and
    # at a takeover, and every event write of a worker checks it under the run's row lock.
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    worker_id: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default="0")
    # Outputs the plan reuses (partial re-runs, `cached_outputs`), so that a worker builds
    # the same plan the API validated.
    cached_outputs: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class RunNode(Base):
    """One node of one run. A row per node keeps an update O(1) for 5,000-node graphs."""

    __tablename__ = "run_nodes"

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    node_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    level: Mapped[int] = mapped_column(default=0)
    attempt: Mapped[int] = mapped_column(default=0)
    output: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    skipped_because: Mapped[str | None] = mapped_column(Text, default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    tokens_input: Mapped[int] = mapped_column(default=0)
    tokens_output: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
