from app.core.ws.manager import ConnectionManager, MessageHandler, TooManyTunnels
from app.core.ws.messages import CloseCode, WSMessage, encode, error_message
from app.core.ws.tunnel import Tunnel, TunnelLimits

__all__ = [
    "CloseCode", "ConnectionManager", "MessageHandler", "TooManyTunnels", "Tunnel",
    "TunnelLimits", "WSMessage", "encode", "error_message",
]
