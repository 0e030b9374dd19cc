"""The WebSocket tunnel, `/api/v1/ws?token=…[&after=…]` (DESIGN.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from functools import partial

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from app.core.config import Settings
from app.core.di import Registry
from app.core.security import InvalidToken, decode_token
from app.core.ws import (
    CloseCode,
    ConnectionManager,
    TooManyTunnels,
    Tunnel,
    TunnelLimits,
    WSMessage,
    encode,
    error_message,
)
from app.models import User
from app.modules.events.manager import EventLogManager

router = APIRouter(tags=["ws"])
logger = logging.getLogger("cascade.ws")


async def _authenticate(websocket: WebSocket, registry: Registry) -> tuple[int, float] | None:
    settings = registry.get(Settings)
    token = websocket.query_params.get("token", "")
    try:
        claims = decode_token(token, secret=settings.JWT_SECRET, expected_typ="access")
    except InvalidToken:
        return None
    if claims.role != "user":
        return None
    # jose compares `exp` with the current time in whole seconds; a token whose expiry has
    # passed (and that the watchdog would close at once) gets no session.
    if claims.expires_at.timestamp() <= time.time():
        return None
    async with websocket.app.state.sessionmaker() as session:
        user = await session.get(User, claims.subject)
    if user is None or not user.is_active or user.deleted_at is not None:
        return None
    return user.id, claims.expires_at.timestamp()


def _parse_after(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return -1
    return value if value >= 0 else -1


@router.websocket("/ws")
async def tunnel_endpoint(websocket: WebSocket) -> None:
    registry: Registry = websocket.app.state.registry
    settings = registry.get(Settings)
    connections = registry.get(ConnectionManager)
    events = registry.get(EventLogManager)
    sessionmaker = websocket.app.state.sessionmaker

    # Browsers can read a close code but not a refused handshake: accept, then close.
    origin = websocket.headers.get("origin")
    if settings.CORS_ORIGINS and origin is not None and origin not in settings.CORS_ORIGINS \
            and "*" not in settings.CORS_ORIGINS:
        await websocket.accept()
        await websocket.close(code=CloseCode.FORBIDDEN_ORIGIN, reason="origin not allowed")
        return
    auth = await _authenticate(websocket, registry)
    await websocket.accept()
    if auth is None:
        await websocket.close(code=CloseCode.UNAUTHORIZED, reason="invalid token")
        return
    user_id, expires_at = auth
    current = await events.current_cursor(sessionmaker, user_id)
    after = _parse_after(websocket.query_params.get("after"))
    bad_after = after == -1
    if bad_after:
        after = None
    # No cursor: start live from now. A cursor beyond the log means nothing to replay.
    start = current if after is None else min(after, current)

    tunnel = Tunnel(
        websocket, user_id, after=start,
        fetch_after=partial(events.fetch_after, sessionmaker),
        limits=TunnelLimits(queue_bytes=settings.WS_SEND_QUEUE_BYTES,
                            ping_interval_s=settings.WS_PING_INTERVAL_S,
                            idle_timeout_s=settings.WS_IDLE_TIMEOUT_S,
                            replay_batch=settings.WS_REPLAY_BATCH),
        expires_at=expires_at,
    )
    try:
        connections.add(tunnel)
    except TooManyTunnels as exc:
        await websocket.close(code=CloseCode.TOO_MANY_TUNNELS, reason=str(exc))
        return
    # Events committed after `current` was read and before the tunnel was added reached no
    # tunnel (a local dispatch, or in queue mode a hint, finds it only from now on): the
    # sender catches up to the log's cursor after its replay. Read before `connection.ready`
    # goes out, so nothing the client does after it waits behind this read.
    tunnel.nudge(await events.current_cursor(sessionmaker, user_id))
    await websocket.send_text(encode({"type": "connection.ready",
                                      "data": {"user_id": user_id, "cursor": current}}))
    if bad_after:  # reported after connection.ready, which is always the first message
        await websocket.send_text(encode(error_message(
            "invalid_cursor", "after must be a non-negative integer cursor")))
    sender = asyncio.create_task(tunnel.run_sender())
    watchdog = asyncio.create_task(tunnel.run_watchdog())
    receiver = asyncio.create_task(_receive_loop(tunnel, connections, settings))
    closed = asyncio.create_task(tunnel.closed.wait())
    try:
        await asyncio.wait({sender, receiver, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        connections.remove(tunnel)
        for task in (sender, watchdog, receiver, closed):
            task.cancel()
        for task in (sender, watchdog, receiver, closed):
            with contextlib.suppress(BaseException):
                await task
        await tunnel.close(tunnel.close_code or CloseCode.NORMAL)
        # Returning hands the connection back to the server, which drops it: the close frame
        # must be out first. Behind a stalled reader (4409) that takes until it drains what
        # is in flight; a client silent for the idle timeout gets no more time than that.
        await tunnel.wait_closed(settings.WS_IDLE_TIMEOUT_S)


async def _receive_loop(tunnel: Tunnel, connections: ConnectionManager,
                        settings: Settings) -> None:
    websocket = tunnel.websocket
    while True:
        try:
            text = await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            tunnel.closed.set()
            return
        except KeyError:  # a binary frame: receive_text() finds no "text"
            tunnel.touch()
            tunnel.send_message(error_message("unsupported_frame", "send JSON text frames"))
            continue
        tunnel.touch()
        if len(text.encode("utf-8")) > settings.WS_MAX_FRAME_BYTES:
            await tunnel.close(CloseCode.TOO_BIG, "frame too large")
            return
        await _handle_frame(tunnel, connections, text)


async def _handle_frame(tunnel: Tunnel, connections: ConnectionManager, text: str) -> None:
    try:
        raw = json.loads(text)
    except ValueError:
        tunnel.send_message(error_message("malformed_json", "the frame is not valid JSON"))
        return
    request_id = raw.get("request_id") if isinstance(raw, dict) else None
    request_id = request_id if isinstance(request_id, str) else None
    try:
        message = WSMessage.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        tunnel.send_message(error_message(
            "invalid_message", f"{where}: {first.get('msg', 'invalid')}", request_id))
        return
    if message.type == "ping":
        tunnel.send_message({"type": "pong", "data": message.data})
        return
    if message.type == "pong":
        return
    handler = connections.message_handlers.get(message.type)
    if handler is None:
        tunnel.send_message(error_message(
            "unknown_type", f"unknown message type {message.type!r}", message.request_id))
        return
    try:
        await handler(tunnel, message.data, message.request_id)
    except Exception:
        logger.exception("tunnel handler for %s failed", message.type)
        tunnel.send_message(error_message("internal_error", "the request failed",
                                          message.request_id))
