from app.core.bus.event_bus import EventBus
from app.core.bus.state import StateOp

__all__ = ["EventBus", "StateOp"]
