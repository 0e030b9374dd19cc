"""Run and node statuses, their allowed transitions, and the state ops the runner attaches to
its events so the stored state changes in the same transaction as the event (DESIGN.md §5)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, cast

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Run, RunNode

_NODES = cast(Table, RunNode.__table__)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CACHED = "cached"
    CANCELLED = "cancelled"


# From-states each node status may be entered from. A transition outside this table is a bug
# in the runner, and it raises instead of silently overwriting (completed → running, say).
NODE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus | None]] = {
    NodeStatus.PENDING: frozenset({None}),
    NodeStatus.RUNNING: frozenset({NodeStatus.PENDING, NodeStatus.RUNNING}),  # retry attempts
    NodeStatus.COMPLETED: frozenset({NodeStatus.RUNNING}),
    NodeStatus.FAILED: frozenset({NodeStatus.RUNNING}),
    NodeStatus.SKIPPED: frozenset({NodeStatus.PENDING}),
    NodeStatus.CACHED: frozenset({NodeStatus.PENDING}),
    NodeStatus.CANCELLED: frozenset({NodeStatus.PENDING, NodeStatus.RUNNING}),
}
TERMINAL_NODE_STATUSES = frozenset({NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED,
                                    NodeStatus.CACHED, NodeStatus.CANCELLED})


class IllegalTransition(RuntimeError):
    pass


def check_transition(node_id: str, current: NodeStatus | None, new: NodeStatus) -> None:
    if current not in NODE_TRANSITIONS[new]:
        raise IllegalTransition(f"node {node_id}: {current} → {new} is not allowed")


# --- state ops (see app/core/bus/state.py) -------------------------------------------------
@dataclass(frozen=True)
class NodeInsert:
    order: ClassVar[int] = 0
    row: dict[str, Any]

    @classmethod
    async def apply_batch(cls, session: AsyncSession, ops: list[NodeInsert]) -> None:
        # Core, not ORM, statements: the ORM's bulk paths cost more than the database here.
        await session.execute(insert(_NODES), [op.row for op in ops])


@dataclass(frozen=True)
class NodeUpdate:
    order: ClassVar[int] = 1
    run_id: uuid.UUID
    node_id: str
    values: dict[str, Any]

    @classmethod
    async def apply_batch(cls, session: AsyncSession, ops: list[NodeUpdate]) -> None:
        # Later updates of one node win; rows with the same keys go as one executemany.
        merged: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        for op in ops:
            merged.setdefault((op.run_id, op.node_id), {}).update(op.values)
        by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for (run_id, node_id), values in merged.items():
            by_keys.setdefault(tuple(sorted(values)), []).append(
                {"run_id": run_id, "node_id": node_id, **values})
        for keys, rows in by_keys.items():
            stmt = (update(_NODES)
                    .where(_NODES.c.run_id == bindparam("_run_id"),
                           _NODES.c.node_id == bindparam("_node_id"))
                    .values({key: bindparam(key) for key in keys}))
            await session.execute(stmt, [
                {"_run_id": row.pop("run_id"), "_node_id": row.pop("node_id"), **row}
                for row in rows])


@dataclass(frozen=True)
class RunUpdate:
    order: ClassVar[int] = 2
    run_id: uuid.UUID
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def apply_batch(cls, session: AsyncSession, ops: list[RunUpdate]) -> None:
        merged: dict[uuid.UUID, dict[str, Any]] = {}
        for op in ops:
            merged.setdefault(op.run_id, {}).update(op.values)
        for run_id, values in merged.items():
            await session.execute(update(Run).where(Run.id == run_id).values(**values)
                                  .execution_options(synchronize_session=False))
