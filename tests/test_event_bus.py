"""The event bus (DESIGN.md §5): persist to `event_logs` first, then dispatch; subscriber
failures are isolated; ephemeral events are dispatched, never persisted; gapless `user_seq`
under heavy concurrency on SQLite and PostgreSQL.

Real parts only: the app's own EventBus, its database, and (for the concurrent test) a real
uvicorn on 127.0.0.1 answering real HTTP requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.di import Registry
from app.core.events import Event, EventTypes
from app.models import EventLog
from tests.conftest import LiveServer
from tests.helpers import sign_up_and_login
from tests.tunnel_helpers import (
    bus_of,
    db_rows,
    last_seq,
    node_status,
    ready,
    recv_json,
    stream_delta,
    ws_connect,
)


async def _row(app: FastAPI, event: Event) -> EventLog | None:
    async with app.state.sessionmaker() as session:
        return await session.get(EventLog, event.id)


async def test_emit_writes_the_log_before_any_subscriber_runs(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    checked: list[tuple[str, int | None, bool]] = []

    async def reads_its_row_back(event: Event, registry: Registry) -> None:
        assert event.id is not None and event.user_seq is not None
        row = await _row(app, event)
        ok = (row is not None and row.user_seq == event.user_seq
              and row.event_name == event.type and row.payload == event.payload
              and row.user_id == event.user_id)
        checked.append((event.type, event.user_seq, ok))

    bus.add_subscriber(("*",), reads_its_row_back)
    start = await last_seq(app, account.id)

    # 1. bus.emit (group-commit writer)
    await bus.emit(node_status(account.id, "emit", 1))
    # 2. bus.emit_many
    await bus.emit_many([node_status(account.id, "many", i) for i in range(3)])
    # 3. emit_in: an event written inside a request transaction, dispatched after commit
    r = await client.post("/api/v1/flows", json={"name": "f"}, headers=account.headers)
    assert r.status_code == 201, r.text
    r = await client.patch(f"/api/v1/flows/{r.json()['id']}", json={"name": "g"},
                           headers=account.headers)
    assert r.status_code == 200, r.text

    assert [seq for _, seq, _ in checked] == list(range(start + 1, start + 7))
    assert all(ok for _, _, ok in checked), checked
    assert [t for t, _, _ in checked][-2:] == ["flow.created", "flow.updated"]


async def test_a_request_commits_and_dispatches_its_events_before_it_answers(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    """An event written inside a request (`emit_in`) is committed and dispatched before the
    client gets its response (read-your-writes; app/api/deps.py promises it)."""
    account = await sign_up_and_login(live_client)
    app = live_server.app
    dispatched: list[Event] = []

    async def slow_subscriber(event: Event, registry: Registry) -> None:
        await asyncio.sleep(0.3)
        dispatched.append(event)

    bus_of(app).add_subscriber(("project.*",), slow_subscriber)
    r = await live_client.post("/api/v1/projects", json={"name": "p"}, headers=account.headers)
    assert r.status_code == 201, r.text
    # At the moment the response arrives: the event is dispatched and committed.
    assert [e.type for e in dispatched] == [EventTypes.PROJECT_CREATED]
    rows = await db_rows(app, account.id)
    assert rows[-1].event_name == EventTypes.PROJECT_CREATED
    assert rows[-1].payload["project_id"] == r.json()["id"]


async def test_nothing_reaches_a_tunnel_that_is_not_in_the_log(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    """Every message a client gets with a cursor is already readable from the log."""
    account = await sign_up_and_login(live_client)
    app = live_server.app
    bus = bus_of(app)
    async with await ws_connect(live_server, account.access_token) as ws:
        start = (await ready(ws))["data"]["cursor"]
        emitters = [asyncio.create_task(bus.emit(node_status(account.id, "t", i)))
                    for i in range(20)]
        for i in range(5):
            r = await live_client.post("/api/v1/projects", json={"name": f"p{i}"},
                                       headers=account.headers)
            assert r.status_code == 201, r.text
        await asyncio.gather(*emitters)
        rows = {}
        for expected in range(start + 1, start + 26):
            message = await recv_json(ws)
            assert message["cursor"] == expected, message
            async with app.state.sessionmaker() as session:
                row = (await session.execute(
                    EventLog.__table__.select().where(EventLog.user_id == account.id,
                                                      EventLog.user_seq == expected))).first()
            assert row is not None, f"cursor {expected} reached the client before the log"
            rows[expected] = row
            assert row.event_name == message["type"]


async def test_a_failing_subscriber_is_logged_and_isolated(
        app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    after_boom: list[Event] = []

    async def boom(event: Event, registry: Registry) -> None:
        raise RuntimeError(f"subscriber exploded on {event.type}")

    async def records(event: Event, registry: Registry) -> None:
        after_boom.append(event)

    bus.add_subscriber(("execution.*", "project.*"), boom)
    bus.add_subscriber(("*",), records)

    with caplog.at_level(logging.ERROR, logger="cascade.bus"):
        single = await bus.emit(node_status(account.id, "single", 0))  # does not raise
        batch = [node_status(account.id, "batch", i) for i in range(3)]
        await bus.emit_many(batch)  # does not raise
        r = await client.post("/api/v1/projects", json={"name": "p"}, headers=account.headers)
        assert r.status_code == 201, r.text  # the request still succeeds

    # Every later subscriber still ran, for every event, in order.
    assert [e.id for e in after_boom[:4]] == [single.id] + [e.id for e in batch]
    assert after_boom[-1].type == EventTypes.PROJECT_CREATED
    # Each failure is logged with its event id, with the traceback.
    failures = [rec for rec in caplog.records
                if rec.name == "cascade.bus" and rec.levelno >= logging.ERROR]
    for event in [single, *batch, after_boom[-1]]:
        matching = [rec for rec in failures if str(event.id) in rec.getMessage()]
        assert len(matching) == 1, (event, [rec.getMessage() for rec in failures])
        assert matching[0].exc_info is not None
    # And the events are in the log all the same.
    rows = await db_rows(app, account.id)
    assert {single.id, *(e.id for e in batch), after_boom[-1].id} <= {row.id for row in rows}


async def test_ephemeral_events_are_dispatched_but_never_persisted(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    seen: list[Event] = []

    async def records(event: Event, registry: Registry) -> None:
        seen.append(event)

    bus.add_subscriber(("*",), records)
    before_rows = await db_rows(app, account.id)
    before_seq = await last_seq(app, account.id)

    delta = await bus.emit(stream_delta(account.id, "solo", 0))
    assert seen == [delta]
    assert delta.id is None and delta.user_seq is None and delta.created_at is None
    assert not delta.persisted
    assert "cursor" not in delta.to_message()

    # Mixed with persisted events: dispatched in order, only the persisted ones are numbered.
    mixed = [node_status(account.id, "m", 0), stream_delta(account.id, "m", 1),
             Event(EventTypes.EXECUTION_NODE_PROGRESS, {"node_id": "n", "pct": 50},
                   user_id=account.id),
             node_status(account.id, "m", 3)]
    await bus.emit_many(mixed)
    assert seen[1:] == mixed
    assert [e.user_seq for e in mixed] == [before_seq + 1, None, None, before_seq + 2]

    rows = await db_rows(app, account.id)
    assert len(rows) == len(before_rows) + 2
    assert not {r.event_name for r in rows} & EventTypes.EPHEMERAL
    assert await last_seq(app, account.id) == before_seq + 2


async def test_unknown_event_types_are_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    before = await last_seq(app, account.id)
    for bad in ("flow.exploded", "", "flow.*", "*", "FLOW.CREATED", "execution.node.streams"):
        with pytest.raises(ValueError):
            Event(bad, {}, user_id=account.id)
    # An Event whose type was changed after construction is refused by the bus too.
    event = node_status(account.id, "x", 0)
    event.type = "made.up"
    with pytest.raises(ValueError):
        await bus.emit(event)
    with pytest.raises(ValueError):
        await bus.emit_many([node_status(account.id, "ok", 1), event])
    async with app.state.sessionmaker() as session, session.begin():
        with pytest.raises(ValueError):
            await bus.emit_in(session, event)
    assert await last_seq(app, account.id) == before
    assert len(await db_rows(app, account.id)) == before


# --- concurrency ------------------------------------------------------------------------------

USERS = 5
EMITTERS = 50
PER_EMITTER = 40


async def test_concurrent_emitters_get_gapless_user_seq(
        live_server: LiveServer, live_client: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture) -> None:
    """50 concurrent emitters × 40 events across 5 users, mixing bus.emit, bus.emit_many and
    request-path CRUD over real HTTP: every user's log is exactly 1..N, nothing lost, each
    event dispatched once, and SQLite never says "database is locked"."""
    app = live_server.app
    bus = bus_of(app)
    accounts = [await sign_up_and_login(live_client) for _ in range(USERS)]
    dispatched: Counter[tuple[int, int]] = Counter()

    async def counts(event: Event, registry: Registry) -> None:
        if event.persisted:
            dispatched[(event.user_id, event.user_seq or -1)] += 1

    bus.add_subscriber(("*",), counts)
    base = {a.id: await last_seq(app, a.id) for a in accounts}
    rng = random.Random(1234)

    async def via_emit(n: int, user_id: int) -> None:
        for i in range(PER_EMITTER):
            event = await bus.emit(node_status(user_id, f"e{n}", i))
            assert event.user_seq is not None

    async def via_emit_many(n: int, user_id: int) -> None:
        i = 0
        while i < PER_EMITTER:
            size = min(rng.randint(1, 9), PER_EMITTER - i)
            await bus.emit_many([node_status(user_id, f"e{n}", i + k) for k in range(size)])
            i += size

    async def via_http(n: int, account: Any) -> None:
        # create, then updates, then a delete: one event per request
        r = await live_client.post("/api/v1/flows", json={"name": f"e{n}-0"},
                                   headers=account.headers)
        assert r.status_code == 201, r.text
        flow_id = r.json()["id"]
        for i in range(1, PER_EMITTER - 1):
            r = await live_client.patch(f"/api/v1/flows/{flow_id}", json={"name": f"e{n}-{i}"},
                                        headers=account.headers)
            assert r.status_code == 200, r.text
        r = await live_client.delete(f"/api/v1/flows/{flow_id}", headers=account.headers)
        assert r.status_code == 204, r.text

    jobs = []
    for n in range(EMITTERS):
        account = accounts[n % USERS]
        if n < USERS:  # one request-path emitter per user (requests cost the most)
            jobs.append(via_http(n, account))
        elif n % 2:
            jobs.append(via_emit(n, account.id))
        else:
            jobs.append(via_emit_many(n, account.id))
    rng.shuffle(jobs)
    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*jobs)

    for account in accounts:
        rows = await db_rows(app, account.id)
        n_emitters = len(range(accounts.index(account), EMITTERS, USERS))
        expected = base[account.id] + n_emitters * PER_EMITTER
        assert [r.user_seq for r in rows] == list(range(1, expected + 1)), account.id
        assert await last_seq(app, account.id) == expected
        # Every bus event is there exactly once (no event lost, none doubled).
        tags = Counter((r.payload["tag"], r.payload["i"]) for r in rows
                       if r.event_name == EventTypes.EXECUTION_NODE_STATUS)
        assert all(c == 1 for c in tags.values())
        for user_seq in range(base[account.id] + 1, expected + 1):
            assert dispatched[(account.id, user_seq)] == 1, (account.id, user_seq)
    assert sum(dispatched.values()) == EMITTERS * PER_EMITTER
    assert not [rec for rec in caplog.records if "locked" in rec.getMessage()
                or rec.levelno >= logging.ERROR]


async def test_a_write_for_a_missing_user_fails_only_its_own_emitter(
        app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    account = await sign_up_and_login(client)
    other = await sign_up_and_login(client)
    bus = bus_of(app)
    before = await last_seq(app, account.id)
    before_other = await last_seq(app, other.id)

    # All queued in the same loop iteration, so they share one group-commit batch.
    good = [node_status(account.id, "g", i) for i in range(10)]
    bad = node_status(987_654, "bad", 0)
    bad_many = [node_status(other.id, "bm", 0), node_status(987_655, "bm", 1)]
    tail = [node_status(other.id, "t", i) for i in range(3)]
    with caplog.at_level(logging.ERROR, logger="cascade.bus"):
        results = await asyncio.gather(
            *(bus.emit(e) for e in good[:5]), bus.emit(bad), *(bus.emit(e) for e in good[5:]),
            bus.emit_many(bad_many), bus.emit_many(tail), return_exceptions=True)
    outcomes = ["error" if isinstance(r, BaseException) else "ok" for r in results]
    assert outcomes == ["ok"] * 5 + ["error"] + ["ok"] * 5 + ["error", "ok"], results

    # Neighbours were written, gapless, in the order they were queued.
    assert [e.user_seq for e in good] == list(range(before + 1, before + 11))
    # A failed write is atomic: none of its events were written, none keep numbers.
    assert bad.user_seq is None and bad.id is None
    assert all(e.user_seq is None for e in bad_many)
    assert [e.user_seq for e in tail] == list(range(before_other + 1, before_other + 4))
    assert [r.user_seq for r in await db_rows(app, account.id)] == list(range(1, before + 11))
    assert [r.user_seq for r in await db_rows(app, other.id)] == list(
        range(1, before_other + 4))
    assert any(rec.levelno >= logging.ERROR for rec in caplog.records)

    # The bus keeps working afterwards.
    after = await bus.emit(node_status(account.id, "after", 0))
    assert after.user_seq == before + 11


async def test_an_emitter_cancelled_while_waiting_still_gets_its_events_written(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    bus = bus_of(app)
    before = await last_seq(app, account.id)
    dispatched: list[Event] = []

    async def records(event: Event, registry: Registry) -> None:
        dispatched.append(event)

    bus.add_subscriber(("execution.node.status",), records)
    events = [node_status(account.id, "cancelled-emitter", i) for i in range(3)]
    emitter = asyncio.create_task(bus.emit_many(events))
    await asyncio.sleep(0)  # queued, not yet committed
    emitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await emitter
    await bus.emit(node_status(account.id, "after", 0))  # written after the cancelled ones
    assert [e.user_seq for e in events] == [before + 1, before + 2, before + 3]
    assert [r.user_seq for r in await db_rows(app, account.id)][-4:] == list(
        range(before + 1, before + 5))
    assert [e.payload["tag"] for e in dispatched][-4:] == ["cancelled-emitter"] * 3 + [
        "after"]


async def test_every_kind_of_subscriber_is_called_and_awaited(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    # Plain functions are called without a coroutine; anything returning an awaitable (an
    # async function, an object with an async __call__, a partial of an async function) is
    # awaited. Deciding by inspect.iscoroutinefunction missed the last two.
    import functools

    account = await sign_up_and_login(client)
    bus = bus_of(app)
    seen: dict[str, list[int]] = {"sync": [], "async": [], "object": [], "partial": []}

    def plain(event: Event, registry: Registry) -> None:
        seen["sync"].append(event.payload["i"])

    async def coroutine_function(event: Event, registry: Registry) -> None:
        await asyncio.sleep(0)
        seen["async"].append(event.payload["i"])

    class Stamps:
        async def __call__(self, event: Event, registry: Registry) -> None:
            await asyncio.sleep(0)
            seen["object"].append(event.payload["i"])

    async def tagged(tag: str, event: Event, registry: Registry) -> None:
        seen[tag].append(event.payload["i"])

    for handler in (plain, coroutine_function, Stamps(), functools.partial(tagged, "partial")):
        bus.add_subscriber(("execution.node.status",), handler)
    await bus.emit_many([node_status(account.id, "kinds", i) for i in range(3)])
    assert seen == {"sync": [0, 1, 2], "async": [0, 1, 2], "object": [0, 1, 2],
                    "partial": [0, 1, 2]}


@pytest.mark.parametrize("backend", ["postgres"])  # ending server sessions: PostgreSQL only
async def test_the_writer_recovers_when_the_database_drops_its_connections(
        app: FastAPI, client: httpx.AsyncClient) -> None:
    """PostgreSQL restarts or an admin kills sessions: the writer's pooled connection dies
    under it. The write that hit it fails (its emitter hears so); the dead connection must not
    be handed out again, so the next writes succeed, gapless."""
    import asyncpg

    account = await sign_up_and_login(client)
    bus = bus_of(app)
    first = await bus.emit(node_status(account.id, "before", 0))
    # From outside the app's pool: end every other session on the app's database.
    admin = await asyncpg.connect(app.state.settings.DATABASE_URL.replace(
        "postgresql+asyncpg://", "postgresql://"))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await admin.close()
    assert killed >= 1  # at least the writer's connection
    # Every pooled connection is dead now; each is found out (and dropped) once at most.
    outcomes = []
    for attempt in range(app.state.settings.DB_POOL_SIZE + 2):
        try:
            event = await bus.emit(node_status(account.id, "after", attempt))
        except RuntimeError:
            outcomes.append("failed")
            continue
        outcomes.append("ok")
        break
    assert outcomes[-1] == "ok", outcomes
    assert event.user_seq == first.user_seq + 1  # failed writes kept no numbers
    again = await bus.emit(node_status(account.id, "again", 0))
    assert again.user_seq == event.user_seq + 1
