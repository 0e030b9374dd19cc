"""State changes that commit in the same transaction as the events announcing them.

An event may carry `StateOp`s. The event log writer applies every op of a batch inside the
batch's transaction, grouped by class (so a thousand node updates become one executemany) and
in the class's `order` (inserts before updates).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class StateOp(Protocol):
    order: ClassVar[int]

    @classmethod
    async def apply_batch(cls, session: AsyncSession, ops: list[Any]) -> None: ...


async def apply_state_ops(session: AsyncSession, ops: list[StateOp]) -> None:
    by_class: dict[type[StateOp], list[StateOp]] = {}
    for op in ops:
        by_class.setdefault(type(op), []).append(op)
    for cls in sorted(by_class, key=lambda c: c.order):
        await cls.apply_batch(session, by_class[cls])
