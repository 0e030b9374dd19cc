"""Issue 3: every persisted event reaches every tunnel of its user exactly once, in order,
across any disconnect (DESIGN.md §4 "Resume", §5).

Real uvicorn on 127.0.0.1, the `websockets` client, real SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from app.core.events import Event, EventTypes
from app.core.ws import ConnectionManager, encode
from app.modules.events.manager import EventLogManager, event_from_row
from tests.conftest import LiveServer
from tests.helpers import Account, sign_up_and_login
from tests.tunnel_helpers import (
    Incarnation,
    bus_of,
    db_rows,
    drain_quiet,
    last_seq,
    node_status,
    read_until_cursor,
    ready,
    sort,
    stream_delta,
    ws_connect,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Small replay pages, so a resume takes many round trips while live events arrive.
    return {"WS_REPLAY_BATCH": 4}


def assert_matches_log(messages: list[dict[str, Any]], rows: dict[int, Any]) -> None:
    """Each tunnel message is exactly its row of the log, in the envelope of §4."""
    for message in messages:
        row = rows[message["cursor"]]
        assert message["type"] == row.event_name
        data = dict(row.payload)
        if row.run_id is not None:
            data["run_id"] = str(row.run_id)
            data["run_seq"] = row.run_seq
        assert message["data"] == data
        assert message["ts"] == row.created_at.isoformat()


async def test_resume_replays_exactly_the_missed_events_while_writes_continue(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    app = live_server.app
    bus = bus_of(app)
    account = await sign_up_and_login(live_client)

    # First incarnation: live from now; it reads some events, then the connection drops
    # with more in flight.
    first = await ws_connect(live_server, account.access_token)
    inc1 = Incarnation(ready=await ready(first))
    assert inc1.ready["data"]["cursor"] == 2
    await bus.emit(stream_delta(account.id, "live-while-connected", 0))
    await bus.emit_many([node_status(account.id, "one", i) for i in range(10)])
    await read_until_cursor(first, inc1, 8)
    await first.close()  # 9..12 were sent but never read
    seen = inc1.cursors[-1]
    assert inc1.cursors == list(range(3, seen + 1))

    # While away: persisted events through every path, and ephemeral ones.
    for i in range(30):
        await bus.emit(node_status(account.id, "away", i))
        if i % 10 == 0:
            await bus.emit(stream_delta(account.id, "away", i))
    await bus.emit_many([node_status(account.id, "away-many", i) for i in range(20)])
    for i in range(5):
        r = await live_client.post("/api/v1/flows", json={"name": f"away-{i}"},
                                   headers=account.headers)
        assert r.status_code == 201, r.text

    # A background writer keeps going while the next incarnation replays.
    stop = asyncio.Event()

    async def writer() -> None:
        rng = random.Random(7)
        for n in itertools.count():
            if stop.is_set() and n >= 60:
                return
            choice = rng.random()
            if choice < 0.4:
                await bus.emit(node_status(account.id, "bg", 0))
            elif choice < 0.6:
                await bus.emit_many([node_status(account.id, "bg-many", k)
                                     for k in range(rng.randint(2, 6))])
            elif choice < 0.7:
                await bus.emit(stream_delta(account.id, "bg", 0))
            else:
                r = await live_client.post("/api/v1/projects", json={"name": "bg"},
                                           headers=account.headers)
                assert r.status_code == 201, r.text
            await asyncio.sleep(0)

    background = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    second = await ws_connect(live_server, account.access_token, after=seen)
    inc2 = Incarnation(ready=await ready(second))
    assert inc2.ready["data"]["cursor"] >= 12 + 55
    # Read the replay while the writer goes on, then stop it and read to the end.
    await read_until_cursor(second, inc2, inc2.ready["data"]["cursor"])
    stop.set()
    await background
    total = await last_seq(app, account.id)
    await read_until_cursor(second, inc2, total)
    await drain_quiet(second, inc2)
    await second.close()

    # No gap, no duplicate: the two incarnations together are 3..total, exactly once.
    assert inc2.cursors == list(range(seen + 1, total + 1))
    assert inc1.cursors + inc2.cursors == list(range(3, total + 1))
    rows = {row.user_seq: row for row in await db_rows(app, account.id)}
    assert sorted(rows) == list(range(1, total + 1))
    assert_matches_log(inc1.events + inc2.events, rows)
    # Ephemeral events are pushed live, never replayed.
    deltas = [m["data"]["delta"] for m in inc2.other if m["type"] == "execution.node.stream"]
    assert not [d for d in deltas if d.startswith("away")], deltas
    assert not [m for m in inc2.events if m["type"] in EventTypes.EPHEMERAL]
    assert {m["type"] for m in inc1.other} == {"execution.node.stream"}
    assert not {row.event_name for row in rows.values()} & EventTypes.EPHEMERAL


async def test_resume_edge_cursors(live_server: LiveServer,
                                   live_client: httpx.AsyncClient) -> None:
    """after=0 replays everything; after=current replays nothing; a cursor from the future
    replays nothing and later events still arrive."""
    app = live_server.app
    account = await sign_up_and_login(live_client)
    await bus_of(app).emit_many([node_status(account.id, "e", i) for i in range(5)])
    total = await last_seq(app, account.id)
    for case in ("zero", "current", "future"):
        after = {"zero": 0, "current": total, "future": total + 50}[case]
        expected = list(range(1, total + 1)) if case == "zero" else []
        async with await ws_connect(live_server, account.access_token, after=after) as ws:
            inc = Incarnation(ready=await ready(ws))
            assert inc.ready["data"]["cursor"] == total
            if expected:
                await read_until_cursor(ws, inc, expected[-1])
            await drain_quiet(ws, inc, 0.1)
            assert inc.cursors == expected
            event = await bus_of(app).emit(node_status(account.id, "next", after))
            await read_until_cursor(ws, inc, event.user_seq or 0)
            assert inc.cursors == [*expected, event.user_seq]
            total = event.user_seq or 0


# --- a property: any sequence of connects, drops, resumes and writes ----------------------

@dataclass
class Client:
    """A browser tab that keeps its cursor across reconnects, plus a second plain tab."""

    server: LiveServer
    account: Account
    last: int = 0
    ws: ClientConnection | None = None
    incarnations: list[Incarnation] = field(default_factory=list)
    tab: ClientConnection | None = None
    tabs: list[Incarnation] = field(default_factory=list)
    expected_total: int = 2  # user.created, auth.login.succeeded
    ephemeral_sent: int = 0
    open_windows: list[list[str]] = field(default_factory=list)

    async def connect(self) -> None:
        if self.ws is not None:
            return
        self.ws = await ws_connect(self.server, self.account.access_token, after=self.last)
        inc = Incarnation(ready=await ready(self.ws))
        assert inc.ready["data"]["cursor"] == self.expected_total
        self.incarnations.append(inc)

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()  # whatever was in flight is lost for this incarnation
            self.ws = None

    def take(self, inc: Incarnation, message: dict[str, Any], chained: bool) -> None:
        if "cursor" in message:
            if chained:  # the resuming tab: exactly the next one, every time
                assert message["cursor"] == self.last + 1, (message, self.last)
                self.last = message["cursor"]
        sort(inc, message)

    async def read(self, n: int) -> None:
        """Process up to n more persisted events on the resuming tab."""
        if self.ws is None:
            return
        target = min(self.expected_total, self.last + n)
        inc = self.incarnations[-1]
        while self.last < target:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            self.take(inc, message, chained=True)

    async def toggle_tab(self) -> None:
        if self.tab is None:  # a plain tab: no cursor, live from now
            self.tab = await ws_connect(self.server, self.account.access_token)
            inc = Incarnation(ready=await ready(self.tab))
            assert inc.ready["data"]["cursor"] == self.expected_total
            self.tabs.append(inc)
        else:
            await self.finish_tab()

    async def finish_tab(self) -> None:
        if self.tab is None:
            return
        inc = self.tabs[-1]
        if self.expected_total > inc.ready["data"]["cursor"]:
            await read_until_cursor(self.tab, inc, self.expected_total)
        await drain_quiet(self.tab, inc, 0.05)
        start = inc.ready["data"]["cursor"]
        assert inc.cursors == list(range(start + 1, self.expected_total + 1))
        await self.tab.close()
        self.tab = None


ACTION = st.one_of(
    st.just(("connect",)),
    st.just(("disconnect",)),
    st.just(("resume",)),
    st.just(("tab",)),
    st.tuples(st.just("emit"), st.sampled_from(["emit", "emit_many", "http"]),
              st.integers(1, 6)),
    st.tuples(st.just("ephemeral"), st.integers(1, 3)),
    st.tuples(st.just("read"), st.integers(1, 8)),
)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=st.lists(ACTION, min_size=1, max_size=18))
async def test_every_persisted_event_reaches_each_tunnel_once_in_order(
        live_server: LiveServer, live_client: httpx.AsyncClient,
        actions: list[tuple[Any, ...]]) -> None:
    app = live_server.app
    bus = bus_of(app)
    client = Client(live_server, await sign_up_and_login(live_client))
    for action in actions:
        kind = action[0]
        if kind == "connect":
            await client.connect()
        elif kind == "disconnect":
            await client.disconnect()
        elif kind == "resume":
            await client.disconnect()
            await client.connect()
        elif kind == "tab":
            await client.toggle_tab()
        elif kind == "emit":
            _, how, k = action
            if how == "emit":
                for i in range(k):
                    await bus.emit(node_status(client.account.id, "p", i))
            elif how == "emit_many":
                await bus.emit_many([node_status(client.account.id, "p", i) for i in range(k)])
            else:
                for i in range(k):
                    r = await live_client.post("/api/v1/projects", json={"name": f"p{i}"},
                                               headers=client.account.headers)
                    assert r.status_code == 201, r.text
            client.expected_total += k
        elif kind == "ephemeral":
            for _ in range(action[1]):
                client.ephemeral_sent += 1
                await bus.emit(stream_delta(client.account.id, "eph", client.ephemeral_sent))
        elif kind == "read":
            await client.read(action[1])

    # The end: the resuming tab catches up; nothing extra arrives afterwards.
    await client.connect()
    await client.read(client.expected_total)
    assert client.ws is not None
    inc = client.incarnations[-1]
    await drain_quiet(client.ws, inc, 0.05)
    await client.disconnect()
    await client.finish_tab()

    total = await last_seq(app, client.account.id)
    assert total == client.expected_total
    chain = [c for inc in client.incarnations for c in inc.cursors]
    assert chain == list(range(1, total + 1))
    rows = {row.user_seq: row for row in await db_rows(app, client.account.id)}
    assert_matches_log([m for inc in client.incarnations + client.tabs for m in inc.events],
                       rows)
    # Ephemeral messages only ever come live, each at most once per connection.
    for inc in client.incarnations + client.tabs:
        deltas = [m["data"]["delta"] for m in inc.other]
        assert len(deltas) == len(set(deltas))
        assert all(m["type"] == "execution.node.stream" for m in inc.other)
    connections: ConnectionManager = app.state.registry.get(ConnectionManager)
    for _ in range(100):
        if connections.count(client.account.id) == 0:
            break
        await asyncio.sleep(0.02)
    assert connections.count(client.account.id) == 0


# --- two users --------------------------------------------------------------------------------

async def test_two_users_never_see_each_others_events(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    app = live_server.app
    bus = bus_of(app)
    alice = await sign_up_and_login(live_client)
    bob = await sign_up_and_login(live_client)
    a_tabs = [await ws_connect(live_server, alice.access_token, after=0) for _ in range(2)]
    b_tab = await ws_connect(live_server, bob.access_token, after=0)
    a_incs = [Incarnation(ready=await ready(ws)) for ws in a_tabs]
    b_inc = Incarnation(ready=await ready(b_tab))

    async def write(account: Account, tag: str) -> None:
        for i in range(15):
            await bus.emit(node_status(account.id, tag, i))
            await bus.emit(Event(EventTypes.EXECUTION_NODE_STREAM,
                                 {"node_id": "n", "delta": tag}, user_id=account.id))
            if i % 3 == 0:
                r = await live_client.post("/api/v1/flows", json={"name": f"{tag}-{i}"},
                                           headers=account.headers)
                assert r.status_code == 201, r.text
        await bus.emit_many([node_status(account.id, tag, 100 + k) for k in range(10)])

    await asyncio.gather(write(alice, "alice"), write(bob, "bob"))
    a_total = await last_seq(app, alice.id)
    b_total = await last_seq(app, bob.id)
    for ws, inc in zip(a_tabs, a_incs, strict=True):
        await read_until_cursor(ws, inc, a_total)
        await drain_quiet(ws, inc, 0.1)
        await ws.close()
    await read_until_cursor(b_tab, b_inc, b_total)
    await drain_quiet(b_tab, b_inc, 0.1)
    await b_tab.close()

    a_rows = {row.user_seq: row for row in await db_rows(app, alice.id)}
    b_rows = {row.user_seq: row for row in await db_rows(app, bob.id)}
    for inc in a_incs:
        assert inc.cursors == list(range(1, a_total + 1))
        assert_matches_log(inc.events, a_rows)
        text = json.dumps(inc.events + inc.other)
        assert "bob" not in text
        assert {m["data"]["delta"] for m in inc.other} == {"alice"}
    assert b_inc.cursors == list(range(1, b_total + 1))
    assert_matches_log(b_inc.events, b_rows)
    assert "alice" not in json.dumps(b_inc.events + b_inc.other)

    # The audit API agrees: Bob's log holds only Bob's events, and Alice's only hers.
    for account, other_name, total in ((bob, "alice", b_total), (alice, "bob", a_total)):
        r = await live_client.get("/api/v1/events", params={"limit": 1000},
                                  headers=account.headers)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert {item["user_id"] for item in items} == {account.id}
        assert [item["user_seq"] for item in items] == list(range(1, total + 1))
        assert other_name not in json.dumps(items)


async def test_dropping_tunnels_in_the_middle_of_a_replay_never_wedges_the_log(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    """A tunnel's sender is cancelled when its client goes, often in the middle of a replay
    read. That must not leave a database transaction (on SQLite: the write lock) behind."""
    app = live_server.app
    bus = bus_of(app)
    account = await sign_up_and_login(live_client)
    await bus.emit_many([node_status(account.id, "bulk", i) for i in range(200)])
    for k in range(24):
        ws = await ws_connect(live_server, account.access_token, after=0, open_timeout=5)
        await ready(ws)
        await asyncio.sleep(0.003 * (k % 7))  # the replay is under way
        ws.transport.abort()  # the network drops (no closing handshake)
        await ws.wait_closed()
    # Writes still go through at once, on both paths.
    event = await asyncio.wait_for(bus.emit(node_status(account.id, "after", 0)), 5)
    r = await asyncio.wait_for(live_client.post(
        "/api/v1/projects", json={"name": "after"}, headers=account.headers), 5)
    assert r.status_code == 201, r.text
    async with await ws_connect(live_server, account.access_token,
                                after=event.user_seq) as ws:
        inc = Incarnation(ready=await ready(ws))
        await read_until_cursor(ws, inc, (event.user_seq or 0) + 1)
        assert inc.cursors == [(event.user_seq or 0) + 1]


async def test_the_catch_up_read_gives_each_event_as_the_log_api_reads_it(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    """The tunnel's catch-up (on PostgreSQL one statement straight on asyncpg) gives every
    event's message exactly as the ORM row of the log makes it, with its bounds applied."""
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    await bus.emit_many([node_status(account.id, "read", i, nested={"a": [i, None, "é"]})
                         for i in range(4)])
    r = await client.post("/api/v1/flows", json={"name": "f"}, headers=account.headers)
    assert r.status_code == 201, r.text  # flow.created: flow and project ids, a session
    rows = await db_rows(app, account.id)
    expected = [(row.user_seq, encode(event_from_row(row).to_message())) for row in rows]
    events: EventLogManager = app.state.registry.get(EventLogManager)
    sessionmaker = app.state.sessionmaker
    assert await events.fetch_after(sessionmaker, account.id, 0, None, 100) == expected
    first, last = rows[0].user_seq, rows[-1].user_seq
    assert await events.fetch_after(sessionmaker, account.id, first, last - 1, 100) \
        == expected[1:-1]
    assert await events.fetch_after(sessionmaker, account.id, first, None, 2) == expected[1:3]
    assert await events.fetch_after(sessionmaker, account.id + 1000, 0, None, 100) == []
