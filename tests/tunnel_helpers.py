"""Helpers for the tunnel and event-log tests: a real `websockets` client against a real
uvicorn on 127.0.0.1, and read-backs from the real database."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.core.bus import EventBus
from app.core.events import Event, EventTypes
from app.main import create_app
from app.models import EventLog, User
from tests.conftest import LiveServer, make_settings


def bus_of(app: FastAPI) -> EventBus:
    bus: EventBus = app.state.registry.get(EventBus)
    return bus


def ws_url(server: LiveServer, token: str | None = None, after: int | str | None = None,
           **extra: str) -> str:
    params: dict[str, Any] = {}
    if token is not None:
        params["token"] = token
    if after is not None:
        params["after"] = after
    params.update(extra)
    return server.ws_url + (f"?{urlencode(params)}" if params else "")


async def ws_connect(server: LiveServer, token: str | None = None,
                     after: int | str | None = None, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 10)
    # A client that closes with unread frames stops reading and never sees the server's close
    # reply; don't let that cost seconds.
    kwargs.setdefault("close_timeout", 0.5)
    kwargs.setdefault("ping_interval", None)
    return await connect(ws_url(server, token, after), **kwargs)


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), within)
    message = json.loads(raw)
    assert isinstance(message, dict), message
    return message


async def recv_non_ping(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The next message that is not a server heartbeat."""
    deadline = time.monotonic() + within
    while True:
        message = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message.get("type") != "ping":
            return message


async def expect_close(ws: ClientConnection, within: float = 5.0) -> tuple[int | None,
                                                                              list[Any]]:
    """Read until the server closes; returns (close code, every message received first)."""
    received: list[Any] = []
    deadline = time.monotonic() + within
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the server did not close in {within}s; got {received}")
            raw = await asyncio.wait_for(ws.recv(), remaining)
            received.append(json.loads(raw))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else None), received


async def ready(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    """The first message must be connection.ready."""
    message = await recv_json(ws, within)
    assert message["type"] == "connection.ready", message
    assert set(message["data"]) >= {"user_id", "cursor"}, message
    return message


@dataclass
class Incarnation:
    """What one tunnel connection received."""

    ready: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)  # messages with a cursor
    other: list[dict[str, Any]] = field(default_factory=list)  # everything else

    @property
    def cursors(self) -> list[int]:
        return [m["cursor"] for m in self.events]


async def read_until_cursor(ws: ClientConnection, inc: Incarnation, target: int,
                            within: float = 15.0) -> None:
    """Read until the tunnel delivered `target` (or fail after `within` seconds)."""
    deadline = time.monotonic() + within
    while not inc.events or inc.events[-1]["cursor"] < target:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"tunnel stalled at {inc.cursors[-1:] or 'nothing'}, want {target}")
        message = await recv_json(ws, remaining)
        sort(inc, message)


def sort(inc: Incarnation, message: dict[str, Any]) -> None:
    if "cursor" in message:
        inc.events.append(message)
    else:
        inc.other.append(message)


async def drain_quiet(ws: ClientConnection, inc: Incarnation, quiet: float = 0.2) -> None:
    """Read whatever else arrives until the tunnel has been quiet for `quiet` seconds."""
    while True:
        try:
            message = await recv_json(ws, quiet)
        except TimeoutError:
            return
        sort(inc, message)


async def db_rows(app: FastAPI, user_id: int) -> list[EventLog]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(
            select(EventLog).where(EventLog.user_id == user_id).order_by(EventLog.user_seq)
        )).scalars())


async def last_seq(app: FastAPI, user_id: int) -> int:
    async with app.state.sessionmaker() as session:
        value = (await session.execute(
            select(User.last_event_seq).where(User.id == user_id))).scalar_one()
    return int(value)


def node_status(user_id: int, tag: str, i: int, **payload: Any) -> Event:
    """A persisted event the tests can emit straight on the bus (no run needed)."""
    return Event(EventTypes.EXECUTION_NODE_STATUS, {"tag": tag, "i": i, **payload},
                 user_id=user_id)


def stream_delta(user_id: int, tag: str, i: int) -> Event:
    return Event(EventTypes.EXECUTION_NODE_STREAM,
                 {"run_id": None, "node_id": "n", "delta": f"{tag}-{i}"}, user_id=user_id)


@asynccontextmanager
async def running_server(database_url: str, *, log_level: str = "warning",
                         access_log: bool = False, **overrides: Any,
                         ) -> AsyncIterator[LiveServer]:
    """A real uvicorn on a free loopback port, with its own settings."""
    settings = make_settings(database_url, **overrides)
    server = LiveServer(create_app(settings), settings)
    if log_level != "warning" or access_log:
        import uvicorn

        server.config = uvicorn.Config(
            server.app, host="127.0.0.1", port=server.port, log_level=log_level,
            access_log=access_log, lifespan="on",
            ws_max_size=settings.WS_MAX_FRAME_BYTES + 1024, ws_ping_interval=None)
        server.server = uvicorn.Server(server.config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def small_buffer_socket(port: int, size: int = 4096) -> socket.socket:
    """A connected loopback TCP socket with a small receive buffer (a slow reader)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock
