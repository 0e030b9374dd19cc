"""Run and node statuses, their allowed transitions, and the state ops the runner attaches to
its events so the stored state changes in the same transaction as the event (DESIGN.md §5)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple, cast

from sqlalchemy import Table

from app.core.db.bulk import Bulk
from app.models import Run, RunNode

_NODES = cast(Table, RunNode.__table__)
_RUNS = cast(Table, Run.__table__)


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
class _NodeChanges:
    """Applies a batch's NodeInserts and NodeUpdates together, in event order: an update of
    a node inserted in the same batch folds into its row, and the updates of one node merge,
    so a node whose pending, running and completed events share a transaction costs one
    INSERT instead of an INSERT and two UPDATEs."""

    order: ClassVar[int] = 0

    @classmethod
    async def apply_batch(cls, bulk: Bulk, ops: list[NodeInsert | NodeUpdate]) -> None:
        inserts: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        updates: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}
        for op in ops:
            if isinstance(op, NodeInsert):
                inserts[(op.row["run_id"], op.row["node_id"])] = dict(op.row)
                continue
            key = (op.run_id, op.node_id)
            row = inserts.get(key)
            if row is not None:
                row.update(op.values)
            else:
                updates.setdefault(key, {}).update(op.values)
        # Core, not ORM, statements: the ORM's bulk paths cost more than the database here.
        await bulk.insert_many(_NODES, list(inserts.values()))
        await bulk.update_many(_NODES, ("run_id", "node_id"), [
            {"run_id": run_id, "node_id": node_id, **values}
            for (run_id, node_id), values in updates.items()])


# Plain slotted dataclasses: one is built per event, and frozen ones cost three times more.
@dataclass(slots=True)
class NodeInsert:
    """A new run_nodes row (every key of it)."""

    batch_group: ClassVar[type] = _NodeChanges
    row: dict[str, Any]


@dataclass(slots=True)
class NodeUpdate:
    batch_group: ClassVar[type] = _NodeChanges
    run_id: uuid.UUID
    node_id: str
    values: dict[str, Any]


@dataclass(slots=True)
class RunUpdate:
    order: ClassVar[int] = 2
    run_id: uuid.UUID
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def apply_batch(cls, bulk: Bulk, ops: list[RunUpdate]) -> None:
        merged: dict[uuid.UUID, dict[str, Any]] = {}
        for op in ops:
            merged.setdefault(op.run_id, {}).update(op.values)
        # One statement per set of columns, not one per run: a batch of the writer holds
        # the starts and ends of many runs.
        await bulk.update_many(_RUNS, ("id",),
                               [{"id": run_id, **values} for run_id, values in merged.items()])


class AcceptedRun(NamedTuple):
    """What the caller of a run start is told (the 202 body, `execution.accepted`)."""

    run_id: uuid.UUID
    status: str
    warnings: list[dict[str, str]]
