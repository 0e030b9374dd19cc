"""The audit API, GET /api/v1/events (DESIGN.md §3, §5): filters, cursor paging, the NDJSON
export, and who may see what. Against a real uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.events import Event, EventTypes
from app.models import Run
from tests.conftest import LiveServer
from tests.helpers import Account, assert_error, sign_up_and_login
from tests.tunnel_helpers import (
    Incarnation,
    bus_of,
    last_seq,
    read_until_cursor,
    ready,
    stream_delta,
    ws_connect,
)

BOOTSTRAP = "bootstrap-" + "a" * 30
NDJSON = "application/x-ndjson"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The export reads WS_REPLAY_BATCH rows a page: make it span many pages.
    return {"BOOTSTRAP_ADMIN_TOKEN": BOOTSTRAP, "WS_REPLAY_BATCH": 3}


async def make_run(app: FastAPI, account: Account, flow_id: str | None) -> uuid.UUID:
    """A runs row, as the execution module would create it (the run_seq counter lives on
    it)."""
    run = Run(user_id=account.id, flow_id=uuid.UUID(flow_id) if flow_id else None,
              status="running", graph={"nodes": [], "edges": []}, provider_id="echo")
    async with app.state.sessionmaker() as session, session.begin():
        session.add(run)
    return run.id


async def run_events(app: FastAPI, account: Account, run_id: uuid.UUID, outcome: str,
                     flow_id: str) -> None:
    """A run's events as the runner writes them: each carries the run's flow."""
    bus = bus_of(app)
    of_run = {"user_id": account.id, "run_id": run_id, "flow_id": uuid.UUID(flow_id)}
    await bus.emit(Event(EventTypes.EXECUTION_STARTED, {"nodes": 2}, **of_run))
    await bus.emit_many([
        Event(EventTypes.EXECUTION_NODE_STATUS, {"node_id": n, "status": "running"}, **of_run)
        for n in ("a", "b")])
    await bus.emit(stream_delta(account.id, "never-logged", 0))
    await bus.emit(Event(EventTypes.EXECUTION_NODE_COMPLETED, {"node_id": "a", "output": "x"},
                         **of_run))
    final = EventTypes.EXECUTION_COMPLETED if outcome == "ok" else EventTypes.EXECUTION_FAILED
    await bus.emit(Event(final, {"status": outcome}, **of_run))


@dataclass
class World:
    alice: Account
    bob: Account
    flow1: str
    flow2: str
    run1: uuid.UUID
    run2: uuid.UUID
    bob_run: uuid.UUID


async def populate(server: LiveServer, client: httpx.AsyncClient) -> World:
    app = server.app
    alice = await sign_up_and_login(client)
    bob = await sign_up_and_login(client)

    async def post(account: Account, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(path, json=body, headers=account.headers)
        assert r.status_code == 201, r.text
        return dict(r.json())

    project = await post(alice, "/api/v1/projects", {"name": "audit"})
    flow1 = (await post(alice, "/api/v1/flows", {"name": "one", "project_id": project["id"]}))
    flow2 = (await post(alice, "/api/v1/flows", {"name": "two"}))
    r = await client.patch(f"/api/v1/flows/{flow1['id']}", json={"name": "one-b"},
                           headers=alice.headers)
    assert r.status_code == 200, r.text
    run1 = await make_run(app, alice, flow1["id"])
    run2 = await make_run(app, alice, flow2["id"])
    await asyncio.gather(run_events(app, alice, run1, "ok", flow1["id"]),
                         run_events(app, alice, run2, "no", flow2["id"]))
    bob_flow = await post(bob, "/api/v1/flows", {"name": "bob's"})
    bob_run = await make_run(app, bob, bob_flow["id"])
    await run_events(app, bob, bob_run, "ok", bob_flow["id"])
    r = await client.delete(f"/api/v1/flows/{flow2['id']}", headers=alice.headers)
    assert r.status_code == 204, r.text
    return World(alice, bob, flow1["id"], flow2["id"], run1, run2, bob_run)


async def get_page(client: httpx.AsyncClient, account_headers: dict[str, str],
                   **params: Any) -> dict[str, Any]:
    r = await client.get("/api/v1/events", params=params, headers=account_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "next_cursor"}
    return dict(body)


async def get_all(client: httpx.AsyncClient, headers: dict[str, str], **params: Any,
                  ) -> list[dict[str, Any]]:
    body = await get_page(client, headers, limit=1000, **params)
    assert body["next_cursor"] is None
    return list(body["items"])


async def page_through(client: httpx.AsyncClient, headers: dict[str, str], limit: int,
                       **params: Any) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    cursor: str | None = None
    while True:
        query = dict(params, limit=limit)
        if cursor is not None:
            query["cursor"] = cursor
        body = await get_page(client, headers, **query)
        pages += 1
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(body["items"]) == limit


async def export(client: httpx.AsyncClient, headers: dict[str, str], **params: Any,
                 ) -> list[dict[str, Any]]:
    lines = []
    async with client.stream("GET", "/api/v1/events", params=params,
                             headers={**headers, "Accept": NDJSON}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(NDJSON)
        assert "content-length" not in r.headers  # streamed, not built in memory
        async for line in r.aiter_lines():
            if line:
                lines.append(line)
    items = [json.loads(line) for line in lines]
    assert all(isinstance(item, dict) for item in items)
    return items


def keys(items: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(item["user_id"], item["user_seq"]) for item in items]


# --- filters ----------------------------------------------------------------------------------

async def test_filters_run_flow_type_and_time(live_server: LiveServer,
                                              live_client: httpx.AsyncClient) -> None:
    world = await populate(live_server, live_client)
    headers = world.alice.headers
    everything = await get_all(live_client, headers)
    total = await last_seq(live_server.app, world.alice.id)
    assert [item["user_seq"] for item in everything] == list(range(1, total + 1))
    assert {item["user_id"] for item in everything} == {world.alice.id}
    assert not {item["type"] for item in everything} & EventTypes.EPHEMERAL
    for item in everything:
        assert set(item) == {"id", "type", "payload", "user_id", "project_id", "run_id",
                             "run_seq", "user_seq", "session_id", "created_at", "flow_id"}
        uuid.UUID(item["id"])
    assert len({item["id"] for item in everything}) == len(everything)

    # run_id: that run's events, run_seq 1..n
    run1 = await get_all(live_client, headers, run_id=str(world.run1))
    assert [item["run_seq"] for item in run1] == [1, 2, 3, 4, 5]
    assert {item["run_id"] for item in run1} == {str(world.run1)}
    assert run1 == [item for item in everything if item["run_id"] == str(world.run1)]
    assert [item["type"] for item in run1] == [
        "execution.started", "execution.node.status", "execution.node.status",
        "execution.node.completed", "execution.completed"]
    # Another user's run, or an unknown one, shows nothing (and does not leak).
    assert await get_all(live_client, headers, run_id=str(world.bob_run)) == []
    assert await get_all(live_client, headers, run_id=str(uuid.uuid4())) == []

    # flow_id: the flow's own events and its runs' events
    flow1 = await get_all(live_client, headers, flow_id=world.flow1)
    expected = [item for item in everything
                if item["payload"].get("flow_id") == world.flow1
                or item["run_id"] == str(world.run1)]
    assert flow1 == expected
    assert [item["type"] for item in flow1][:2] == ["flow.created", "flow.updated"]
    flow2 = await get_all(live_client, headers, flow_id=world.flow2)  # deleted since
    assert [item["type"] for item in flow2 if item["type"].startswith("flow.")] == [
        "flow.created", "flow.deleted"]
    # Its run's row lost its flow_id with the flow (ON DELETE SET NULL); the run's events
    # keep theirs, so the audit trail is whole.
    assert [item for item in flow2 if item["run_id"]] == [
        item for item in everything if item["run_id"] == str(world.run2)]
    assert len([item for item in flow2 if item["run_id"]]) == 5
    assert all(item["flow_id"] == world.flow2 for item in flow2)

    # type: a prefix with or without the star, an exact name
    flows = [item for item in everything if item["type"].startswith("flow.")]
    assert len(flows) == 4
    assert await get_all(live_client, headers, type="flow.") == flows
    assert await get_all(live_client, headers, type="flow.*") == flows
    assert await get_all(live_client, headers, type="flow.created") == [
        item for item in everything if item["type"] == "flow.created"]
    node = await get_all(live_client, headers, type="execution.node.*")
    assert node == [item for item in everything if item["type"].startswith("execution.node.")]
    assert len(node) == 6
    assert await get_all(live_client, headers, type="nothing.*") == []
    assert await get_all(live_client, headers, type="flow%") == []  # no SQL wildcards
    assert await get_all(live_client, headers, type="flow_created") == []
    # combined
    assert await get_all(live_client, headers, run_id=str(world.run1),
                         type="execution.node.*") == [
        item for item in run1 if item["type"].startswith("execution.node.")]

    # since (inclusive) / until (exclusive), in any ISO-8601 spelling of the instant
    stamps = sorted({datetime.fromisoformat(item["created_at"]) for item in everything})
    assert len(stamps) >= 4
    cut = stamps[len(stamps) // 2]
    after = [item for item in everything if datetime.fromisoformat(item["created_at"]) >= cut]
    before = [item for item in everything if datetime.fromisoformat(item["created_at"]) < cut]
    assert after and before
    plus2 = timezone(timedelta(hours=2))
    minus5 = timezone(timedelta(hours=-5, minutes=-30))
    for spelling in (cut.isoformat(), cut.astimezone(plus2).isoformat(),
                     cut.astimezone(minus5).isoformat(),
                     cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                     cut.astimezone(UTC).replace(tzinfo=None).isoformat()):  # naive: UTC
        assert await get_all(live_client, headers, since=spelling) == after, spelling
        assert await get_all(live_client, headers, until=spelling) == before, spelling
    window = await get_all(live_client, headers, since=stamps[1].isoformat(),
                           until=stamps[-1].isoformat())
    assert window == [item for item in everything
                      if stamps[1] <= datetime.fromisoformat(item["created_at"]) < stamps[-1]]
    assert await get_all(live_client, headers,
                         since=(stamps[-1] + timedelta(seconds=1)).isoformat()) == []
    assert await get_all(live_client, headers, until=stamps[0].isoformat()) == []

    # bad filter values: 422 in the error shape
    for params in ({"run_id": "nope"}, {"flow_id": "1"}, {"since": "yesterday"},
                   {"limit": 0}, {"limit": -1}, {"type": "x" * 101}):
        r = await live_client.get("/api/v1/events", params=params, headers=headers)
        assert_error(r, 422)


# --- paging, the tunnel, the export -----------------------------------------------------------

async def test_cursor_paging_and_export_agree_with_the_tunnel(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    world = await populate(live_server, live_client)
    alice = world.alice
    everything = await get_all(live_client, alice.headers)
    total = await last_seq(live_server.app, alice.id)

    # Every event exactly once, whatever the page size.
    for limit in (1, 3, 7, total, total + 5):
        items, pages = await page_through(live_client, alice.headers, limit)
        assert items == everything, limit
        assert pages == max(1, -(-total // limit)), limit
    items, pages = await page_through(live_client, alice.headers, 3, type="execution.*")
    assert items == [item for item in everything if item["type"].startswith("execution.")]
    assert pages >= 3

    # What a tunnel replays from 0 is the same log: same cursors, types, payloads, times.
    async with await ws_connect(live_server, alice.access_token, after=0) as ws:
        inc = Incarnation(ready=await ready(ws))
        await read_until_cursor(ws, inc, total)
    assert inc.cursors == [item["user_seq"] for item in everything]
    for message, item in zip(inc.events, everything, strict=True):
        assert message["type"] == item["type"]
        data = dict(item["payload"])
        if item["run_id"]:
            data.update(run_id=item["run_id"], run_seq=item["run_seq"])
        assert message["data"] == data
        assert datetime.fromisoformat(message["ts"]) == datetime.fromisoformat(
            item["created_at"])

    # NDJSON export: the same rows, in the same order, with or without filters.
    assert await export(live_client, alice.headers) == everything
    assert await export(live_client, alice.headers, type="flow.*") == [
        item for item in everything if item["type"].startswith("flow.")]
    assert await export(live_client, alice.headers, run_id=str(world.run2)) == [
        item for item in everything if item["run_id"] == str(world.run2)]
    assert await export(live_client, alice.headers, run_id=str(world.bob_run)) == []

    # A client that drops an export half-way leaves the log writable.
    async with live_client.stream("GET", "/api/v1/events",
                                  headers={**alice.headers, "Accept": NDJSON}) as r:
        async for _line in r.aiter_lines():
            break
    await asyncio.wait_for(bus_of(live_server.app).emit(
        Event(EventTypes.EXECUTION_NODE_STATUS, {"after": "export"}, user_id=alice.id)), 5)

    # A cursor this API did not issue is a 400 in the error shape.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    for cursor in ("garbage", "!!!", b64(b'"x"'), b64(b"[1]"), b64(b"[1, 2, 3]"),
                   b64(b'{"a": 1}'), b64(b'["a", "b"]'), b64(b"\xff\xfe"), "a" * 500,
                   b64(b"[1, 99999999999999999999999]"), b64(b"[99999999999, 1]"),
                   b64(b"[-1, 1]")):
        r = await live_client.get("/api/v1/events", params={"cursor": cursor, "limit": 5},
                                  headers=alice.headers)
        assert_error(r, 400, "invalid_cursor")
    # A good cursor still works after all that.
    body = await get_page(live_client, alice.headers, limit=1)
    body = await get_page(live_client, alice.headers, limit=1, cursor=body["next_cursor"])
    assert [item["user_seq"] for item in body["items"]] == [2]


# --- who sees what ----------------------------------------------------------------------------

async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.post("/api/v1/auth/backoffice/create",
                          json={"email": "auditor@example.com", "username": "auditor",
                                "password": "auditor-password-1"},
                          headers={"X-Bootstrap-Token": BOOTSTRAP})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/backoffice/login",
                          json={"identifier": "auditor", "password": "auditor-password-1"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_users_see_their_own_events_and_admins_see_everyones(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    world = await populate(live_server, live_client)
    alice, bob = world.alice, world.bob
    a_items = await get_all(live_client, alice.headers)
    b_items = await get_all(live_client, bob.headers)
    assert {item["user_id"] for item in a_items} == {alice.id}
    assert {item["user_id"] for item in b_items} == {bob.id}
    assert [item["user_seq"] for item in b_items] == list(
        range(1, await last_seq(live_server.app, bob.id) + 1))
    assert not {item["id"] for item in a_items} & {item["id"] for item in b_items}
    assert await export(live_client, bob.headers) == b_items
    # Bob cannot reach Alice's events by any filter.
    for params in ({"run_id": str(world.run1)}, {"flow_id": world.flow1}):
        assert await get_all(live_client, bob.headers, **params) == []
    # ... nor by asking for her user_id (nor his own: that parameter is for admins).
    for user_id in (alice.id, bob.id):
        r = await live_client.get("/api/v1/events", params={"user_id": user_id},
                                  headers=bob.headers)
        assert_error(r, 403)
        r = await live_client.get("/api/v1/events", params={"user_id": user_id},
                                  headers={**bob.headers, "Accept": NDJSON})
        assert_error(r, 403)
    r = await live_client.get("/api/v1/events")
    assert_error(r, 401)

    # An admin sees every user's events, can narrow to one user, and pages across users.
    admin = await admin_headers(live_client)
    everyone = await get_all(live_client, admin)
    assert keys(everyone) == sorted(keys(a_items) + keys(b_items))
    assert await get_all(live_client, admin, user_id=alice.id) == a_items
    assert await get_all(live_client, admin, user_id=bob.id) == b_items
    assert await get_all(live_client, admin, user_id=999_999) == []
    items, _ = await page_through(live_client, admin, 4)
    assert items == everyone
    assert await export(live_client, admin) == everyone
    assert await export(live_client, admin, user_id=bob.id) == b_items
    runs = await get_all(live_client, admin, type="execution.started")
    assert {item["run_id"] for item in runs} == {str(world.run1), str(world.run2),
                                                  str(world.bob_run)}
