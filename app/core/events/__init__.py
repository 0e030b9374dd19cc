from app.core.events.model import Event
from app.core.events.subscribe import Handler, matches, patterns_of, subscribe
from app.core.events.types import EventTypes

__all__ = ["Event", "EventTypes", "Handler", "matches", "patterns_of", "subscribe"]
