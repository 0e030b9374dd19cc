"""The WebSocket tunnel (DESIGN.md §4), against a real uvicorn on 127.0.0.1 with the
`websockets` client: token checks, the envelope, bad input, limits, heartbeat, token expiry,
Origin, slow consumers and log redaction."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt as jose_jwt
from websockets.asyncio.client import connect

from app.core.config import Settings
from app.core.security import create_token, decode_token
from app.core.ws import ConnectionManager
from tests.conftest import LiveServer
from tests.helpers import sign_up_and_login
from tests.tunnel_helpers import (
    Incarnation,
    bus_of,
    expect_close,
    last_seq,
    node_status,
    read_until_cursor,
    ready,
    recv_json,
    recv_non_ping,
    running_server,
    small_buffer_socket,
    ws_connect,
    ws_url,
)

BOOTSTRAP = "bootstrap-" + "b" * 30
BASE: dict[str, Any] = {
    "BOOTSTRAP_ADMIN_TOKEN": BOOTSTRAP,
    "WS_MAX_FRAME_BYTES": 4096,
    "WS_MAX_TUNNELS_PER_USER": 2,
}


def overrides(**extra: Any) -> list[dict[str, Any]]:
    """For `@pytest.mark.parametrize("settings_overrides", overrides(...))`."""
    return [{**BASE, **extra}]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(BASE)


def connections(server: LiveServer) -> ConnectionManager:
    manager: ConnectionManager = server.app.state.registry.get(ConnectionManager)
    return manager


async def wait_for(predicate: Any, within: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def ping_pong(ws: Any, payload: dict[str, Any] | None = None) -> None:
    """Ping; the pong must come (events and server pings before it are skipped)."""
    await ws.send(json.dumps({"type": "ping", "data": payload or {}}))
    while True:
        message = await recv_non_ping(ws)
        if "cursor" not in message:
            break
    assert message == {"type": "pong", "data": payload or {}}, message


async def admin_token(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/v1/auth/backoffice/create",
                          json={"email": "root@example.com", "username": "root",
                                "password": "admin-password-123"},
                          headers={"X-Bootstrap-Token": BOOTSTRAP})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/backoffice/login",
                          json={"identifier": "root", "password": "admin-password-123"})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


# --- the token is checked before anything else ----------------------------------------------

async def test_bad_tokens_are_closed_with_4001_having_sent_nothing(
        live_server: LiveServer, live_client: httpx.AsyncClient, settings: Settings) -> None:
    account = await sign_up_and_login(live_client)
    doomed = await sign_up_and_login(live_client)
    r = await live_client.delete(f"/api/v1/users/{doomed.id}", headers=doomed.headers)
    assert r.status_code == 204, r.text
    secret = settings.JWT_SECRET

    def mint(**kw: Any) -> str:
        values: dict[str, Any] = {"secret": secret, "subject": account.id, "role": "user",
                                  "typ": "access", "lifetime": timedelta(minutes=5)}
        values.update(kw)
        return create_token(**values)[0]

    good_claims = jose_jwt.get_unverified_claims(account.access_token)
    cases: dict[str, str | None] = {
        "missing": None,
        "empty": "",
        "malformed": "not-a-jwt",
        "three garbage parts": "aaa.bbb.ccc",
        "expired": mint(lifetime=timedelta(seconds=-30)),
        "wrong key": mint(secret="another-secret-" + "y" * 32),
        "refresh token": account.refresh_token,
        "admin token": await admin_token(live_client),
        "admin role minted": mint(role="admin"),
        "other algorithm": jose_jwt.encode(good_claims, secret, algorithm="HS512"),
        "unknown user": mint(subject=999_999),
        "deleted user": doomed.access_token,
        "tampered": account.access_token[:-3] + ("AAA" if not account.access_token.endswith(
            "AAA") else "BBB"),
    }
    for name, token in cases.items():
        ws = await ws_connect(live_server, token)  # accepted: browsers can read the code
        code, received = await expect_close(ws)
        assert (code, received) == (4001, []), name
    # The good token still works, after all that.
    async with await ws_connect(live_server, account.access_token) as ws:
        message = await ready(ws)
        assert message["data"] == {"user_id": account.id,
                                   "cursor": await last_seq(live_server.app, account.id)}
    await wait_for(lambda: connections(live_server).count() == 0, what="tunnels to go")


# --- the envelope, ping, bad input ------------------------------------------------------------

async def test_ready_first_then_events_and_ping_pong(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    async with await ws_connect(live_server, account.access_token) as ws:
        first = await recv_json(ws)
        assert first == {"type": "connection.ready",
                         "data": {"user_id": account.id, "cursor": 2}}
        await ws.send(json.dumps({"type": "ping", "data": {"n": 1}}))
        assert await recv_json(ws) == {"type": "pong", "data": {"n": 1}}
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        # An event: the envelope with cursor and ts.
        event = await bus_of(live_server.app).emit(node_status(account.id, "hello", 1))
        message = await recv_json(ws)
        assert message["type"] == "execution.node.status"
        assert message["data"] == {"tag": "hello", "i": 1}
        assert message["cursor"] == event.user_seq == 3
        assert message["ts"] == event.created_at.isoformat()  # type: ignore[union-attr]
    # A bad `after` is reported, but connection.ready still comes first.
    async with await ws_connect(live_server, account.access_token, after="abc") as ws:
        first = await recv_json(ws)
        assert first["type"] == "connection.ready", first
        second = await recv_json(ws)
        assert second["type"] == "error" and second["data"]["code"] == "invalid_cursor"
        await ping_pong(ws)


BAD_FRAMES: list[tuple[str, str | bytes, str | None]] = [
    ("malformed json", "{not json", None),
    ("truncated json", '{"type": "ping"', None),
    ("a list", "[1, 2, 3]", None),
    ("a number", "42", None),
    ("a string", '"ping"', None),
    ("null", "null", None),
    ("no type", '{"data": {}}', None),
    ("empty type", '{"type": ""}', None),
    ("type not a string", '{"type": 7}', None),
    ("unknown type", '{"type": "no.such.thing"}', None),
    ("unknown type with id", '{"type": "no.such.thing", "request_id": "req-1"}', "req-1"),
    ("data a list", '{"type": "ping", "data": [1]}', None),
    ("data a string, with id", '{"type": "ping", "data": "x", "request_id": "req-2"}', "req-2"),
    ("unexpected key", '{"type": "ping", "data": {}, "extra": 1, "request_id": "r3"}', "r3"),
    ("binary frame", b"\x00\x01binary", None),
]


async def test_bad_input_gets_an_error_and_the_tunnel_stays_open(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    async with await ws_connect(live_server, account.access_token) as ws:
        await ready(ws)
        for name, frame, request_id in BAD_FRAMES:
            await ws.send(frame)
            message = await recv_json(ws)
            assert message["type"] == "error", (name, message)
            data = message["data"]
            assert isinstance(data, dict), (name, message)
            assert isinstance(data.get("code"), str) and data["code"], (name, message)
            assert isinstance(data.get("message"), str) and data["message"], (name, message)
            if request_id is not None:
                assert data.get("request_id") == request_id, (name, message)
            else:
                assert data.get("request_id") is None, (name, message)
            # ... and the socket is still fine
            await ws.send(json.dumps({"type": "ping", "data": {"after": name}}))
            assert await recv_json(ws) == {"type": "pong", "data": {"after": name}}, name
        # Events still flow after all that.
        await bus_of(live_server.app).emit(node_status(account.id, "still", 0))
        assert (await recv_json(ws))["cursor"] == 3


async def test_a_frame_over_the_size_limit_closes_with_1009(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    limit = BASE["WS_MAX_FRAME_BYTES"]
    async with await ws_connect(live_server, account.access_token, max_size=None) as ws:
        await ready(ws)
        # Just under the limit: fine.
        frame = json.dumps({"type": "ping", "data": {"pad": ""}})
        pad = "x" * (limit - len(frame))
        frame = json.dumps({"type": "ping", "data": {"pad": pad}})
        assert len(frame.encode()) == limit
        await ws.send(frame)
        assert (await recv_json(ws))["type"] == "pong"
        # One byte over.
        await ws.send(json.dumps({"type": "ping", "data": {"pad": pad + "x"}}))
        code, received = await expect_close(ws)
        assert (code, received) == (1009, [])
    for size in (limit + 512, 50 * limit):  # checked by the app / by the protocol layer
        async with await ws_connect(live_server, account.access_token) as ws:
            await ready(ws)
            await ws.send(json.dumps({"type": "ping", "data": {"pad": "y" * size}}))
            code, received = await expect_close(ws)
            assert (code, received) == (1009, []), size
    await wait_for(lambda: connections(live_server).count() == 0, what="tunnels to go")


async def test_tunnels_per_user_are_capped_with_4429(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    other = await sign_up_and_login(live_client)
    bus = bus_of(live_server.app)
    first = await ws_connect(live_server, account.access_token)
    second = await ws_connect(live_server, account.access_token)
    await ready(first)
    await ready(second)
    extra = await ws_connect(live_server, account.access_token)
    assert await expect_close(extra) == (4429, [])
    # Another user is not affected by this user's cap.
    async with await ws_connect(live_server, other.access_token) as ws:
        await ready(ws)
    # The two tunnels that were in stay up and both receive every event.
    for ws in (first, second):
        await ping_pong(ws)
    event = await bus.emit(node_status(account.id, "both", 0))
    for ws in (first, second):
        assert (await recv_json(ws))["cursor"] == event.user_seq
    # Closing one frees its slot.
    await first.close()
    await wait_for(lambda: connections(live_server).count(account.id) == 1,
                   what="the closed tunnel to be dropped")
    async with await ws_connect(live_server, account.access_token) as third:
        await ready(third)
        await ping_pong(third)
    await second.close()


# --- heartbeat, idle, expiry, origin ----------------------------------------------------------

@pytest.mark.parametrize("settings_overrides",
                         overrides(WS_PING_INTERVAL_S=0.2, WS_IDLE_TIMEOUT_S=0.8))
async def test_heartbeat_ping_and_idle_close_4408(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    silent = await ws_connect(live_server, account.access_token)
    polite = await ws_connect(live_server, account.access_token)
    await ready(silent)
    await ready(polite)
    started = time.monotonic()

    async def answer_pings() -> int:
        """A client that says nothing but answers the server's pings: never idle."""
        pings = 0
        while time.monotonic() - started < 1.6:
            try:
                message = await recv_json(polite, 0.2)
            except TimeoutError:
                continue
            if message["type"] == "ping":
                pings += 1
                await polite.send(json.dumps({"type": "pong"}))
        return pings

    polite_task = asyncio.create_task(answer_pings())
    code, received = await expect_close(silent, within=5)
    elapsed = time.monotonic() - started
    assert code == 4408
    assert received and all(m == {"type": "ping", "data": {}} for m in received), received
    assert 2 <= len(received) <= 6, received  # one every ~0.2 s until ~0.8 s
    assert 0.7 <= elapsed <= 2.5, elapsed
    assert await polite_task >= 4
    await ping_pong(polite)  # still open, well past the idle timeout
    await polite.close()


@pytest.mark.parametrize("settings_overrides", overrides(ACCESS_TOKEN_MINUTES=0.025))
async def test_the_tunnel_closes_with_4001_when_its_token_expires(
        live_server: LiveServer, live_client: httpx.AsyncClient, settings: Settings) -> None:
    account = await sign_up_and_login(live_client)
    expires_at = decode_token(account.access_token, secret=settings.JWT_SECRET,
                              expected_typ="access").expires_at.timestamp()
    ws = await ws_connect(live_server, account.access_token)
    cursor = (await ready(ws))["data"]["cursor"]
    await bus_of(live_server.app).emit(node_status(account.id, "before", 0))
    code, received = await expect_close(ws, within=5)
    closed_at = time.time()
    assert code == 4001
    assert [m["cursor"] for m in received if "cursor" in m] == [cursor + 1]
    assert closed_at >= expires_at - 0.05
    assert closed_at <= expires_at + 1.5
    # The old token is refused at once; a fresh one and the cursor resume the stream.
    stale = await ws_connect(live_server, account.access_token)
    assert await expect_close(stale) == (4001, [])
    await bus_of(live_server.app).emit(node_status(account.id, "missed", 0))
    r = await live_client.post("/api/v1/auth/refresh",
                               json={"refresh_token": account.refresh_token})
    assert r.status_code == 200, r.text
    async with await ws_connect(live_server, r.json()["access_token"], after=cursor + 1) as ws:
        await ready(ws)
        message = await recv_json(ws)
        assert (message["cursor"], message["data"]["tag"]) == (cursor + 2, "missed")


@pytest.mark.parametrize("settings_overrides",
                         overrides(CORS_ORIGINS="http://builder.example,https://app.example"))
async def test_a_foreign_origin_is_closed_with_4003(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    for origin in ("http://evil.example", "https://app.example.evil.example", "null",
                   "http://builder.example:8080"):
        ws = await ws_connect(live_server, account.access_token, origin=origin)
        assert await expect_close(ws) == (4003, []), origin
    for origin in ("http://builder.example", "https://app.example"):
        async with await ws_connect(live_server, account.access_token, origin=origin) as ws:
            await ready(ws)
            await ping_pong(ws)


# --- a slow consumer --------------------------------------------------------------------------

@pytest.mark.parametrize("settings_overrides", overrides(WS_SEND_QUEUE_BYTES=256 * 1024))
async def test_a_slow_consumer_is_closed_with_4409_and_others_keep_flowing(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    slow_user = await sign_up_and_login(live_client)
    fast_user = await sign_up_and_login(live_client)
    app = live_server.app
    bus = bus_of(app)

    # The slow reader: a tiny TCP receive window, and a client that buffers one frame.
    sock = small_buffer_socket(live_server.port)
    slow = await connect(ws_url(live_server, slow_user.access_token), sock=sock, max_queue=1,
                         compression=None,  # (the flood must not deflate to nothing)
                         max_size=None, ping_interval=None, close_timeout=2)
    slow_seen = Incarnation(ready=await ready(slow))
    # The same user's other tab reads promptly; so does another user's tunnel.
    twin = await ws_connect(live_server, slow_user.access_token, max_size=None)
    twin_seen = Incarnation(ready=await ready(twin))
    fast = await ws_connect(live_server, fast_user.access_token)
    fast_seen = Incarnation(ready=await ready(fast))

    async def read_twin() -> None:
        while True:
            message = await recv_json(twin, within=30)
            (twin_seen.events if "cursor" in message else twin_seen.other).append(message)

    twin_reader = asyncio.create_task(read_twin())

    # The slow client stops reading now. Its user gets ~8 MB of events, in batches of
    # 160 KB, under the 256 KiB send queue (a reader that keeps up never overflows it).
    # (How fast the others are served meanwhile is measured in scripts/bench, part 5.)
    big = "z" * 40_000
    for chunk in range(50):
        await bus.emit_many([node_status(slow_user.id, "flood", chunk * 4 + i, pad=big)
                             for i in range(4)])
        if chunk % 10 == 9:  # meanwhile the other user's events keep arriving
            event = await bus.emit(node_status(fast_user.id, "fast", chunk))
            message = await recv_json(fast, within=5)
            assert message["cursor"] == event.user_seq
            fast_seen.events.append(message)
    total = await last_seq(app, slow_user.id)

    # The server dropped the stalled tunnel, and only it.
    await wait_for(lambda: connections(live_server).count(slow_user.id) == 1, within=10,
                   what="the slow tunnel to be closed")
    assert connections(live_server).count(fast_user.id) == 1
    await ping_pong(fast)
    # The prompt tab of the same user got everything, in order.
    await wait_for(lambda: bool(twin_seen.events) and twin_seen.cursors[-1] == total,
                   within=10, what="the prompt tab to catch up")
    start = twin_seen.ready["data"]["cursor"]
    assert twin_seen.cursors == list(range(start + 1, total + 1))
    twin_reader.cancel()

    # The slow client finally reads: what was in flight, then the 4409 close.
    code, received = await expect_close(slow, within=20)
    assert code == 4409, (code, len(received))
    for message in received:
        (slow_seen.events if "cursor" in message else slow_seen.other).append(message)
    last = slow_seen.cursors[-1] if slow_seen.events else slow_seen.ready["data"]["cursor"]
    assert last < total  # it really fell behind
    # It resumes from its cursor and gets the rest, exactly once, in order.
    resumed = await ws_connect(live_server, slow_user.access_token, after=last, max_size=None)
    again = Incarnation(ready=await ready(resumed))
    await read_until_cursor(resumed, again, total)
    assert slow_seen.cursors + again.cursors == list(range(start + 1, total + 1))
    await resumed.close()
    await twin.close()
    await fast.close()


# --- access logs ------------------------------------------------------------------------------

class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_the_access_token_never_reaches_the_server_logs(
        database_url: str, capfd: pytest.CaptureFixture[str]) -> None:
    collect = _Collect()
    async with running_server(database_url, log_level="info", access_log=True,
                              **BASE) as server:
        names = ("uvicorn", "uvicorn.access", "uvicorn.error")
        for name in names:
            logging.getLogger(name).addHandler(collect)
        try:
            async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as client:
                account = await sign_up_and_login(client)
                token = account.access_token
                expired = create_token(secret=server.app.state.settings.JWT_SECRET,
                                       subject=account.id, role="user", typ="access",
                                       lifetime=timedelta(seconds=-5))[0]
                r = await client.get(f"/api/v1/health?token={token}")
                assert r.status_code == 200
                r = await client.get(f"/api/v1/events?token={token}&limit=1",
                                     headers=account.headers)
                assert r.status_code == 200
                async with await ws_connect(server, token, after=0) as ws:
                    await ready(ws)
                    await ping_pong(ws)
                for bad in (expired, account.refresh_token):
                    ws = await ws_connect(server, bad)
                    assert await expect_close(ws) == (4001, [])
                await asyncio.sleep(0.2)
        finally:
            for name in names:
                logging.getLogger(name).removeHandler(collect)
    captured = capfd.readouterr()
    text = "\n".join(collect.lines) + captured.out + captured.err
    # The logs did record those requests (so this test looks at the right lines) ...
    assert "/api/v1/ws" in text and "/api/v1/health" in text, text
    assert "redacted" in text, text
    # ... and no token, nor any part of one, is in them.
    for secret_value in (token, expired, account.refresh_token):
        assert secret_value not in text
        assert secret_value.split(".")[2] not in text
        assert secret_value.split(".")[1] not in text
