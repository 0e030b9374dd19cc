"""State changes that commit in the same transaction as the events announcing them.

An event may carry `StateOp`s. The event log writer applies every op of a batch inside the
batch's transaction, grouped by class (so a thousand node updates become one executemany) and
in the class's `order` (inserts before updates).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class StateOp(Protocol):
    """A class with `order` and `apply_batch(session, ops)`; or, for several op classes
    applied together in event order, a `batch_group` class that has them."""

    order: ClassVar[int]


async def apply_state_ops(session: AsyncSession, ops: list[StateOp]) -> None:
    by_group: dict[Any, list[StateOp]] = {}
    for op in ops:
        cls = type(op)
        by_group.setdefault(getattr(cls, "batch_group", cls), []).append(op)
    for group in sorted(by_group, key=lambda g: g.order):
        await group.apply_batch(session, by_group[group])
