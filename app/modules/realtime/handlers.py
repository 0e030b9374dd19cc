"""The bridge from the bus to the tunnels: every event goes to its user's open tunnels.

It lives here, not in the emitters, so the runner and the domain managers never import the
WebSocket layer (DESIGN.md §5).
"""

from __future__ import annotations

from app.core.di import Registry
from app.core.events import Event, subscribe
from app.core.ws import ConnectionManager


@subscribe("*")
def forward_to_tunnels(event: Event, registry: Registry) -> None:
    registry.get(ConnectionManager).send_event(event)
