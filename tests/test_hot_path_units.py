"""The pieces the engine's hot path is built from: eager executor calls under shared deadlines, bulk
ids, bulk inserts/updates (COPY and unnest on PostgreSQL, executemany on SQLite), and the
folding of a batch's node changes into one row per node. Database tests run on both
backends against real databases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.bus.state import apply_state_ops
from app.core.db import create_engine, create_sessionmaker
from app.core.db.bulk import _copy_plan, bulk_for
from app.core.events import Event
from app.core.ids import uuid4, uuid7_batch
from app.models import EventLog, Run, RunNode, User
from app.modules.execution.eager import Deadlines
from app.modules.execution.models import NodeInsert, NodeUpdate, RunStatus, RunUpdate

NODES = cast(Table, RunNode.__table__)


# --- Deadlines ---------------------------------------------------------------------------------
def run_with_deadline(awaitable: Any, timeout_s: float) -> Any:
    return Deadlines().run(awaitable, timeout_s)


async def test_a_coroutine_that_never_waits_returns_without_a_timer() -> None:
    async def instant() -> str:
        return "done"

    loop = asyncio.get_running_loop()
    timers_before = len(cast(Any, loop)._scheduled) if hasattr(loop, "_scheduled") else None
    deadlines = Deadlines()
    assert await deadlines.run(instant(), 0.001) == "done"
    assert deadlines._timer is None and not deadlines._heap
    if timers_before is not None:  # the stdlib loop exposes its timer heap
        assert len(cast(Any, loop)._scheduled) == timers_before


async def test_a_coroutine_that_waits_too_long_times_out_and_is_unwound() -> None:
    unwound = asyncio.Event()

    async def slow() -> str:
        try:
            await asyncio.sleep(0)  # a first step, then a long wait
            await asyncio.sleep(10)
            return "late"
        finally:
            unwound.set()

    with pytest.raises(TimeoutError):
        await run_with_deadline(slow(), 0.05)
    assert unwound.is_set()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_results_exceptions_and_values_sent_back_pass_through() -> None:
    async def waits_then_returns() -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, 41)
        return await future + 1

    async def fails_after_waiting() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("boom")

    async def fails_at_once() -> None:
        raise KeyError("k")

    assert await run_with_deadline(waits_then_returns(), 1) == 42
    with pytest.raises(ValueError, match="boom"):
        await run_with_deadline(fails_after_waiting(), 1)
    with pytest.raises(KeyError):
        await run_with_deadline(fails_at_once(), 1)


async def test_cancelling_the_caller_reaches_the_coroutine() -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def waits() -> None:
        await asyncio.sleep(0)
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(run_with_deadline(waits(), 30))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


async def test_other_awaitables_take_the_plain_path() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, future.set_result, "future")
    assert await run_with_deadline(future, 1) == "future"
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await run_with_deadline(never, 0.02)


async def test_many_attempts_share_one_timer_and_each_meets_its_own_deadline() -> None:
    """Attempts with different deadlines in one Deadlines: only the overdue ones time out,
    each no earlier than its deadline, the others finish; one loop timer serves them all."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    outcomes: dict[str, tuple[str, float]] = {}

    async def node(name: str, works_s: float, timeout_s: float) -> None:
        async def work() -> str:
            await asyncio.sleep(works_s)
            return "ok"

        began = loop.time()
        try:
            outcomes[name] = (await deadlines.run(work(), timeout_s), loop.time() - began)
        except TimeoutError:
            outcomes[name] = ("timeout", loop.time() - began)

    tasks = [asyncio.create_task(node("slow-short", 5, 0.05)),
             asyncio.create_task(node("slow-long", 5, 0.15)),
             asyncio.create_task(node("quick", 0.01, 0.10)),
             asyncio.create_task(node("patient", 0.08, 5))]
    await asyncio.sleep(0)
    assert deadlines.pending == 4
    timers = {id(deadlines._timer)}
    await asyncio.sleep(0.02)
    timers.add(id(deadlines._timer))
    await asyncio.gather(*tasks)
    assert {name: result for name, (result, _) in outcomes.items()} == {
        "slow-short": "timeout", "slow-long": "timeout", "quick": "ok", "patient": "ok"}
    # The clock's resolution (1 ms on uvloop) may fire a timer that much early.
    assert outcomes["slow-short"][1] >= 0.05 - 0.002
    assert outcomes["slow-long"][1] >= 0.15 - 0.002
    assert outcomes["slow-long"][1] < 1 and outcomes["slow-short"][1] < 1
    assert len(timers) == 1  # later deadlines did not re-arm the timer
    assert deadlines.pending == 0
    deadlines.close()
    assert deadlines._timer is None


async def test_a_cancel_from_elsewhere_stays_a_cancel_even_past_the_deadline() -> None:
    """As asyncio.timeout: when the task is also cancelled by someone else (the run being
    cancelled), the CancelledError is not turned into a TimeoutError."""
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def stubborn() -> None:
        await asyncio.sleep(0)
        entered.set()
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # unwinding takes a while; then it gives up
                raise

    task = asyncio.create_task(deadlines.run(stubborn(), 0.02))
    await entered.wait()
    await asyncio.sleep(0.03)  # the deadline has fired; the node is unwinding
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_finished_attempts_do_not_pile_up_in_the_heap() -> None:
    deadlines = Deadlines()

    async def short() -> None:
        await asyncio.sleep(0)

    for _ in range(1000):
        await deadlines.run(short(), 300)
    assert deadlines.pending == 0
    assert len(deadlines._heap) <= 64  # compacted while the finished outnumber the live


def test_uuid7_batch_gives_distinct_well_formed_ids_that_grow_with_time() -> None:
    first = uuid7_batch(2000)
    time.sleep(0.002)
    second = uuid7_batch(2000)
    assert len(set(first + second)) == 4000
    assert first == sorted(first) and second == sorted(second) and first[-1] < second[0]
    for value in first[:200] + second[-200:]:
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value and hash(value) == hash(uuid.UUID(str(value)))
    milliseconds = first[0].int >> 80
    assert abs(milliseconds - time.time() * 1000) < 60_000
    assert uuid7_batch(0) == []


def test_ids_are_interchangeable_with_uuid_uuid() -> None:
    """The ids are asyncpg's UUID (cheaper to build, print and COPY): everything the app
    does with a uuid.UUID must work the same on them."""
    ids = [uuid4() for _ in range(500)]
    assert len(set(ids)) == 500
    for value in ids[:50]:
        plain = uuid.UUID(str(value))
        assert isinstance(value, uuid.UUID) and value.version == 4
        assert value.variant == uuid.RFC_4122
        assert value == plain and plain == value and hash(value) == hash(plain)
        assert {plain: 1}[value] == 1 and value.int == plain.int and value.hex == plain.hex
        assert str(value) == str(plain) and not value < plain and not value > plain
    event_id = uuid7_batch(1)[0]
    neighbours = [uuid.UUID(int=event_id.int + 1), uuid.UUID(int=event_id.int - 1)]
    assert sorted([event_id, *neighbours])[1] == event_id


# --- bulk writes on both databases -------------------------------------------------------------
@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _run(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    run_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        user_id = (await session.execute(insert(User).values(
            email=f"{run_id.hex[:8]}@example.com", username=f"u{run_id.hex[:8]}",
            password_hash="x").returning(User.id))).scalar_one()
        await session.execute(insert(Run).values(id=run_id, user_id=user_id, status="running",
                                                 graph={}, provider_id="echo"))
    return run_id


async def _nodes(sessions: async_sessionmaker[AsyncSession],
                 run_id: uuid.UUID) -> dict[str, RunNode]:
    async with sessions() as session:
        rows = (await session.execute(select(RunNode).where(RunNode.run_id == run_id))).scalars()
        return {row.node_id: row for row in rows}


async def test_insert_many_fills_defaults_keeps_nulls_and_encodes_json(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await _run(sessions)
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).insert_many(NODES, [
            {"run_id": run_id, "node_id": "a", "node_type": "t", "status": "pending"},
            {"run_id": run_id, "node_id": "b", "node_type": "t", "status": "completed",
             "level": 2, "output": {"text": "hé", "data": {"n": [1, 2]}}, "started_at": started,
             "tokens_input": 7},
            {"run_id": run_id, "node_id": "c", "node_type": "t", "status": "failed",
             "error": {"code": "x", "message": "y"}, "output": None},
        ])
        await (await bulk_for(session)).insert_many(NODES, [])
    nodes = await _nodes(sessions, run_id)
    assert (nodes["a"].level, nodes["a"].attempt, nodes["a"].tokens_input) == (0, 0, 0)
    assert nodes["a"].output is None and nodes["a"].started_at is None
    assert nodes["b"].output == {"text": "hé", "data": {"n": [1, 2]}}
    assert (nodes["b"].level, nodes["b"].started_at, nodes["b"].tokens_input) == (2, started, 7)
    assert nodes["c"].error == {"code": "x", "message": "y"} and nodes["c"].output is None


async def test_update_many_sets_each_rows_own_columns_by_key(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id, other_run = await _run(sessions), await _run(sessions)
    finished = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=123)
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).insert_many(NODES, [
            {"run_id": r, "node_id": n, "node_type": "t", "status": "pending"}
            for r in (run_id, other_run) for n in ("a", "b", "c")])
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).update_many(NODES, ("run_id", "node_id"), [
            {"run_id": run_id, "node_id": "a", "status": "completed",
             "output": {"text": "A"}, "finished_at": finished, "duration_ms": 5},
            {"run_id": run_id, "node_id": "b", "status": "running", "attempt": 2},
            {"run_id": run_id, "node_id": "c", "status": "completed",
             "output": {"text": "C"}, "finished_at": finished, "duration_ms": 6},
            {"run_id": run_id, "node_id": "missing", "status": "running", "attempt": 1},
        ])
    nodes = await _nodes(sessions, run_id)
    assert (nodes["a"].status, nodes["a"].output, nodes["a"].finished_at,
            nodes["a"].duration_ms) == ("completed", {"text": "A"}, finished, 5)
    assert (nodes["b"].status, nodes["b"].attempt, nodes["b"].output) == ("running", 2, None)
    assert (nodes["c"].output, nodes["c"].duration_ms) == ({"text": "C"}, 6)
    assert "missing" not in nodes
    untouched = await _nodes(sessions, other_run)
    assert {n.status for n in untouched.values()} == {"pending"}


def test_copy_records_take_column_order_and_refuse_a_missing_computed_default() -> None:
    plan = _copy_plan(cast(Table, EventLog.__table__))
    when = datetime(2026, 1, 2, tzinfo=UTC)
    full = {"created_at": when, "id": uuid.UUID(int=1), "event_name": "x",
            "payload": {"a": [1]}, "user_id": 3, "project_id": None, "run_id": None,
            "flow_id": uuid.UUID(int=2), "run_seq": None, "user_seq": 9, "session_id": "s"}
    assert plan.records([full]) == [[uuid.UUID(int=1), "x", '{"a":[1]}', 3, None, None,
                                     uuid.UUID(int=2), None, 9, "s", when]]
    partial = {k: v for k, v in full.items() if k not in ("project_id", "session_id")}
    assert plan.records([partial])[0][4] is None and plan.records([partial])[0][9] is None
    with pytest.raises(ValueError, match=r"event_logs\.created_at has no scalar default"):
        plan.records([{k: v for k, v in partial.items() if k not in ("id", "created_at")}])


async def test_update_many_round_trips_every_kind_of_value(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """PostgreSQL sends a group's rows as one JSON document: text that JSON escapes, JSON
    columns holding a string, a null or nested nulls, NULL over a value, microseconds and
    rows whose keys come in another order must all land as they were given."""
    run_id = await _run(sessions)
    tricky = 'quote " back\\slash \\n not a newline\nnewline\ttab é 🎉 \u2028'
    started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).insert_many(NODES, [
            {"run_id": run_id, "node_id": n, "node_type": "t", "status": "pending",
             "output": {"old": True}, "model": "old"} for n in ("a", "b", "c")])
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).update_many(NODES, ("run_id", "node_id"), [
            {"run_id": run_id, "node_id": "a", "output": tricky, "model": tricky,
             "started_at": started},
            {"node_id": "b", "started_at": started, "model": None, "run_id": run_id,
             "output": {"text": None, "data": {"list": [None, 1.5, tricky]}}},
            {"run_id": run_id, "node_id": "c", "output": None, "skipped_because": tricky,
             "tokens_input": 2**31 - 1},
        ])
    nodes = await _nodes(sessions, run_id)
    assert (nodes["a"].output, nodes["a"].model, nodes["a"].started_at) == (
        tricky, tricky, started)
    assert (nodes["b"].output, nodes["b"].model, nodes["b"].started_at) == (
        {"text": None, "data": {"list": [None, 1.5, tricky]}}, None, started)
    assert (nodes["c"].output, nodes["c"].skipped_because, nodes["c"].tokens_input,
            nodes["c"].model) == (None, tricky, 2**31 - 1, "old")


async def test_counters_add_per_row_and_return_the_new_values(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    users = cast(Table, User.__table__)
    async with sessions() as session, session.begin():
        ids = [(await session.execute(insert(User).values(
            email=f"c{i}-{uuid.uuid4().hex[:6]}@example.com",
            username=f"c{i}_{uuid.uuid4().hex[:6]}", password_hash="x").returning(User.id)))
            .scalar_one() for i in range(3)]
    async with sessions() as session, session.begin():
        bulk = await bulk_for(session)
        assert await bulk.add_to_counters(users, "last_event_seq", {ids[1]: 5}) == {ids[1]: 5}
        # several rows in one call, given in any order; a missing row is left out
        assert await bulk.add_to_counters(
            users, "last_event_seq", {ids[2]: 1, ids[1]: 2, -1: 4, ids[0]: 3}) == {
            ids[0]: 3, ids[1]: 7, ids[2]: 1}

    class Abort(Exception):
        pass

    with pytest.raises(Abort):  # rolled back with the transaction
        async with sessions() as session, session.begin():
            await (await bulk_for(session)).add_to_counters(users, "last_event_seq",
                                                            {ids[0]: 100})
            raise Abort
    async with sessions() as session:
        seqs = dict((await session.execute(
            select(User.id, User.last_event_seq).where(User.id.in_(ids)))).all())
    assert seqs == {ids[0]: 3, ids[1]: 7, ids[2]: 1}


async def test_a_batch_of_node_changes_folds_into_one_row_per_node(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await _run(sessions)
    async with sessions() as session, session.begin():  # an earlier batch
        await apply_state_ops(await bulk_for(session), [NodeInsert({
            "run_id": run_id, "node_id": "old", "node_type": "t", "status": "pending",
            "level": 0})])
    async with sessions() as session, session.begin():
        await apply_state_ops(await bulk_for(session), [
            NodeInsert({"run_id": run_id, "node_id": "new", "node_type": "t",
                        "status": "pending", "level": 1}),
            NodeUpdate(run_id, "old", {"status": "running", "attempt": 1}),
            NodeUpdate(run_id, "new", {"status": "running", "attempt": 1, "model": "m"}),
            RunUpdate(run_id, {"status": "succeeded", "outputs": {"new": {"text": "t"}}}),
            NodeUpdate(run_id, "old", {"status": "completed", "duration_ms": 3}),
            NodeUpdate(run_id, "new", {"status": "completed", "output": {"text": "t"}}),
        ])
    nodes = await _nodes(sessions, run_id)
    assert (nodes["old"].status, nodes["old"].attempt, nodes["old"].duration_ms) == (
        "completed", 1, 3)
    assert (nodes["new"].status, nodes["new"].attempt, nodes["new"].model,
            nodes["new"].level, nodes["new"].output) == ("completed", 1, "m", 1, {"text": "t"})
    async with sessions() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        assert (run.status, run.outputs) == ("succeeded", {"new": {"text": "t"}})


# --- verified-token cache ----------------------------------------------------------------------
def test_a_cached_token_is_still_refused_once_it_expires() -> None:
    from app.core.security import InvalidToken, create_token, decode_token

    secret = "cache-test-" + "s" * 40
    token, claims = create_token(secret=secret, subject=7, role="user", typ="access",
                                 lifetime=timedelta(seconds=1.5))
    first = decode_token(token, secret=secret, expected_typ="access")
    assert first == decode_token(token, secret=secret, expected_typ="access")  # cached
    assert (first.subject, first.jti) == (7, claims.jti)
    with pytest.raises(InvalidToken):  # the cache is per type and secret
        decode_token(token, secret=secret, expected_typ="refresh")
    with pytest.raises(InvalidToken):
        decode_token(token, secret=secret + "x", expected_typ="access")
    deadline = first.expires_at + timedelta(milliseconds=50)
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()))
    with pytest.raises(InvalidToken):
        decode_token(token, secret=secret, expected_typ="access")


async def test_bulk_writes_roll_back_with_their_transaction(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    # The PostgreSQL paths talk to asyncpg directly; they must run inside the session's
    # transaction even as its first statements.
    run_id = await _run(sessions)
    async with sessions() as session, session.begin():
        await (await bulk_for(session)).insert_many(NODES, [
            {"run_id": run_id, "node_id": "kept", "node_type": "t", "status": "pending"}])

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with sessions() as session, session.begin():
            await (await bulk_for(session)).insert_many(NODES, [
                {"run_id": run_id, "node_id": "gone", "node_type": "t", "status": "pending"}])
            raise Abort
    with pytest.raises(Abort):
        async with sessions() as session, session.begin():
            await (await bulk_for(session)).update_many(NODES, ("run_id", "node_id"), [
                {"run_id": run_id, "node_id": "kept", "status": "completed", "attempt": 9}])
            raise Abort
    nodes = await _nodes(sessions, run_id)
    assert set(nodes) == {"kept"}
    assert (nodes["kept"].status, nodes["kept"].attempt) == ("pending", 0)


# --- the JSON codec ----------------------------------------------------------------------------
def test_json_codec_round_trips_and_falls_back_where_orjson_refuses() -> None:
    import json
    import math

    from app.core.json_codec import dumps, loads

    value = {"text": "héllo ✓", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert loads(dumps(value)) == value == json.loads(dumps(value))
    assert dumps({"big": 2**70}) == '{"big":1180591620717411303424}'  # beyond 64 bits
    assert loads(dumps({7: "int key"})) == {"7": "int key"}  # as json.dumps does
    assert dumps({"when": datetime(2026, 1, 2, tzinfo=UTC)}).startswith('{"when":"2026-01-02')
    assert math.isnan(loads('{"x": NaN}')["x"])  # stdlib-only literal, still readable
    assert loads(b'[1, "a"]') == [1, "a"]


# --- the benchmarks' in-memory log ---------------------------------------------------------------
async def test_the_in_memory_log_numbers_events_like_the_real_one() -> None:
    from app.core.bus.memory import InMemoryEventLog
    from app.core.events import Event, EventTypes

    log = InMemoryEventLog()
    run_a, run_b = uuid.uuid4(), uuid.uuid4()
    events = [Event(EventTypes.EXECUTION_STARTED, {}, user_id=1, run_id=run_a),
              Event(EventTypes.EXECUTION_NODE_STREAM, {"delta": "x"}, user_id=1, run_id=run_a),
              Event(EventTypes.EXECUTION_STARTED, {}, user_id=1, run_id=run_b),
              Event(EventTypes.EXECUTION_NODE_STATUS, {}, user_id=2, run_id=run_a),
              Event(EventTypes.PROJECT_CREATED, {}, user_id=1)]
    await log(events[:3])
    await log(events[3:])
    assert [(e.user_seq, e.run_seq) for e in events] == [
        (1, 1), (None, None), (2, 1), (1, 2), (3, None)]
    assert events[1].id is None and events[1].created_at is None  # ephemeral: not logged
    ids = [e.id for e in events if e.id is not None]
    assert len(set(ids)) == 4 and all(i.version == 7 for i in ids)
    assert log.count == 4


# --- the runner's bounded backlog --------------------------------------------------------------
async def test_a_run_waits_for_a_slow_log_instead_of_queueing_without_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes that never wait produce events far faster than a slow log writes them; the run
    must wait for the log once the writer's queue passes _MAX_BACKLOG, not pile up writes."""
    from app.core.bus import EventBus
    from app.core.di import Registry
    from app.core.di.discovery import discover_executors
    from app.modules.execution import runner as runner_module
    from app.modules.execution.graph import parse_graph, validate_graph
    from app.modules.execution.plan import build_plan
    from app.modules.execution.providers.echo import EchoProvider

    monkeypatch.setattr(runner_module, "_MAX_BACKLOG", 3)
    monkeypatch.setattr(runner_module, "_YIELD_EVERY", 4)
    backlog_seen: list[int] = []
    written: list[Event] = []
    bus: EventBus

    async def slow_log(events: list[Event]) -> None:
        backlog_seen.append(bus.backlog)
        await asyncio.sleep(0.002)
        written.extend(events)

    bus = EventBus(cast(Any, None), Registry(), batch_max=2, persist=slow_log)
    specs = discover_executors(include_plugins=False)
    flow = {"nodes": [{"id": f"n{i}", "type": "textOutput", "data": {}} for i in range(60)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(59)]}
    assert not validate_graph(flow, registry=specs, max_nodes=1000, max_edges=1000,
                              max_bytes=1 << 20)
    plan = build_plan(run_id=uuid.uuid4(), user_id=1, project_id=None, flow_id=None,
                      provider_id="echo", graph=parse_graph(flow), registry=specs,
                      trigger_node_id=None, available_outputs={})
    bus.start()
    try:
        status = await runner_module.Runner(plan, bus=bus, provider=EchoProvider(),
                                            limits=runner_module.RunnerLimits()).run()
    finally:
        await bus.stop()
    assert status == RunStatus.SUCCEEDED
    assert len(written) == 2 + 60 * 3  # started, completed; pending, running, completed each
    # Without the bound the whole run would sit in the queue (dozens of writes); with it the
    # writer never sees more than the bound plus the write that crossed it, and a few more
    # that were handed over in the same loop turn.
    assert max(backlog_seen) <= 3 + 4
