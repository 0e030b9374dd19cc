"""`@subscribe` marks a handler; discovery collects the marks into the bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.di.registry import Registry
    from app.core.events.model import Event

# A handler is a coroutine function, or a plain function for one that only hands the event
# on (the tunnel bridge): the bus calls that directly, without a coroutine per event.
Handler = Callable[["Event", "Registry"], Awaitable[None] | None]

_MARK = "__cascade_subscribes__"


def subscribe(*patterns: str) -> Callable[[Handler], Handler]:
    """Subscribe to event types: an exact name, a prefix ending in `.*`, or `*` for all."""
    if not patterns:
        raise ValueError("subscribe() needs at least one event type or pattern")

    def mark(fn: Handler) -> Handler:
        setattr(fn, _MARK, tuple(patterns))
        return fn

    return mark


def patterns_of(obj: object) -> tuple[str, ...]:
    return tuple(getattr(obj, _MARK, ()))


def matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type
