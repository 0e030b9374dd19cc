"""The audit trail survives deletion (DESIGN.md §5): every event of a flow's runs keeps the
flow's id, so `GET /events?flow_id=` still answers them after the flow is gone, and the
migration that added the column back-filled rows written before it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from alembic import command
from app.core.db import create_engine
from tests.conftest import Databases, alembic_config
from tests.engine_helpers import API, create_flow, edge, graph, list_events, node, run_flow
from tests.helpers import sign_up_and_login


async def test_a_deleted_flows_runs_keep_their_events_under_its_id(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    flow_id = await create_flow(client, account, graph(
        [node("a", "initialPrompt", prompt="hello"), node("b", "textOutput")],
        [edge("a", "b")]))
    run_ids = []
    for _ in range(2):
        run_id, run = await run_flow(client, account, app, flow_id=flow_id)
        assert run["status"] == "succeeded", run
        run_ids.append(run_id)
    before = await list_events(client, account, flow_id=flow_id)
    run_events = [e for e in before if e["run_id"]]
    assert {e["run_id"] for e in run_events} == set(run_ids)
    assert len(run_events) == 2 * len(await list_events(client, account, run_id=run_ids[0]))

    r = await client.delete(f"{API}/flows/{flow_id}", headers=account.headers)
    assert r.status_code == 204, r.text
    after = await list_events(client, account, flow_id=flow_id)
    # Everything from before, plus the deletion itself; every row names the flow.
    assert after[:-1] == before
    assert after[-1]["type"] == "flow.deleted"
    assert {e["flow_id"] for e in after} == {flow_id}
    # The runs themselves lost the flow (ON DELETE SET NULL): only the log kept it.
    r = await client.get(f"{API}/execution/runs/{run_ids[0]}", headers=account.headers)
    assert r.status_code == 200 and r.json()["flow_id"] is None, r.text


def _rows(url: str, sql: str, **params: Any) -> list[Any]:
    async def read() -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _uuid_param(url: str, value: uuid.UUID) -> str | uuid.UUID:
    # What sa.Uuid stores: 32 hex digits on SQLite, the uuid type on PostgreSQL.
    return value.hex if url.startswith("sqlite") else value


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_back_fills_flow_ids(backend: str, databases: Databases,
                                           tmp_path: Any) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        url = databases.postgres()
        command.downgrade(alembic_config(url), "base")
    config = alembic_config(url)
    command.upgrade(config, "0002")
    kept, lost, flow_gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    run_kept, run_lost = uuid.uuid4(), uuid.uuid4()
    u = {k: _uuid_param(url, v) for k, v in
         {"kept": kept, "run_kept": run_kept, "run_lost": run_lost}.items()}
    statements = [
        "INSERT INTO users (id, email, username, password_hash, is_active, last_event_seq, "
        "created_at, updated_at) VALUES (1, 'a@x.io', 'a', 'h', true, 9, "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO flows (id, name, description, graph_data, user_id, created_at, "
        "updated_at) VALUES (:kept, 'f', '', '{}', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        # One run whose flow still exists, one whose flow was deleted (flow_id nulled).
        "INSERT INTO runs (id, flow_id, user_id, status, graph, provider_id, outputs, "
        "tokens_input, tokens_output, cost_usd, created_at, last_event_seq) VALUES "
        "(:run_kept, :kept, 1, 'succeeded', '{}', 'echo', '{}', 0, 0, 0, CURRENT_TIMESTAMP, 2)",
        "INSERT INTO runs (id, flow_id, user_id, status, graph, provider_id, outputs, "
        "tokens_input, tokens_output, cost_usd, created_at, last_event_seq) VALUES "
        "(:run_lost, NULL, 1, 'succeeded', '{}', 'echo', '{}', 0, 0, 0, CURRENT_TIMESTAMP, 2)",
    ]
    events = [  # (event_name, payload, run, user_seq, run_seq)
        ("flow.created", {"flow_id": str(kept)}, None, 1, None),
        ("execution.started", {"flow_id": str(kept)}, "run_kept", 2, 1),
        ("execution.completed", {"status": "succeeded"}, "run_kept", 3, 2),
        ("flow.deleted", {"flow_id": str(flow_gone)}, None, 4, None),
        ("execution.started", {"flow_id": str(lost)}, "run_lost", 5, 1),
        ("execution.completed", {"status": "succeeded"}, "run_lost", 6, 2),
        ("user.created", {"user_id": 1}, None, 7, None),
    ]

    payload_param = ":payload" if url.startswith("sqlite") else "CAST(:payload AS JSONB)"

    async def insert() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.execute(text(sql), u)
                for name, payload, run, user_seq, run_seq in events:
                    await conn.execute(text(
                        "INSERT INTO event_logs (id, event_name, payload, user_id, run_id, "
                        "run_seq, user_seq, created_at) VALUES (:id, :name, "
                        f"{payload_param}, 1, "
                        ":run_id, :run_seq, :user_seq, CURRENT_TIMESTAMP)"), {
                            "id": _uuid_param(url, uuid.uuid4()), "name": name,
                            "payload": json.dumps(payload),
                            "run_id": u[run] if run else None, "run_seq": run_seq,
                            "user_seq": user_seq})
        finally:
            await engine.dispose()

    asyncio.run(insert())
    command.upgrade(config, "head")
    found = _rows(url, "SELECT user_seq, flow_id FROM event_logs ORDER BY user_seq")
    as_uuid = [(seq, uuid.UUID(str(flow)) if flow is not None else None) for seq, flow in found]
    assert as_uuid == [(1, kept), (2, kept), (3, kept), (4, flow_gone), (5, lost), (6, lost),
                       (7, None)]
