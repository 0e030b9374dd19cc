"""State changes that commit in the same transaction as the events announcing them.

An event may carry `StateOp`s. The event log writer applies every op of a batch inside the
batch's transaction, grouped (so a thousand node updates become one statement) and in each
group's `order` (node rows before run rows). A group is the op's class, or the class its
`batch_group` names when several op classes must be applied together in event order.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.core.db.bulk import Bulk


class StateOp(Protocol):
    """An op; its group (its class, or its `batch_group`) has `order` and
    `apply_batch(bulk, ops)`."""


async def apply_state_ops(bulk: Bulk, ops: list[StateOp]) -> None:
    by_group: dict[Any, list[StateOp]] = {}
    for op in ops:
        cls = type(op)
        by_group.setdefault(getattr(cls, "batch_group", cls), []).append(op)
    for group in sorted(by_group, key=lambda g: g.order):
        await group.apply_batch(bulk, by_group[group])
