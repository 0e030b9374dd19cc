"""Queue mode's API side, in one test process (DESIGN.md §10): two apps on one PostgreSQL
database stand for two replicas; no worker runs, so runs stay queued.

The worker side and the cross-process promises are tested with real processes in
tests/test_scale_out.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import StartupRefused, create_app
from tests.conftest import make_settings
from tests.helpers import Account, assert_error, sign_up_and_login

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"])

TWO_NODES = {"nodes": [{"id": "a", "type": "initialPrompt", "data": {"prompt": "hi"}},
                       {"id": "b", "type": "textOutput", "data": {}}],
             "edges": [{"id": "e", "source": "a", "target": "b", "sourceHandle": "prompt",
                        "targetHandle": "text"}]}


@contextlib.asynccontextmanager
async def replica(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(make_settings(database_url, EXECUTION_MODE="queue", **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.9.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def test_queue_mode_on_sqlite_is_refused_with_a_clear_message(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}", EXECUTION_MODE="queue")
    with pytest.raises(StartupRefused):
        create_app(settings)
    assert "EXECUTION_MODE=queue needs PostgreSQL" in capsys.readouterr().err


@POSTGRES_ONLY
async def test_admission_counts_queued_runs_of_every_replica(database_url: str) -> None:
    async with replica(database_url, MAX_RUNS_PER_USER=3) as a, \
            replica(database_url, MAX_RUNS_PER_USER=3) as b:
        user = await sign_up_and_login(a)
        starts = [(a if i % 2 else b).post("/api/v1/execution/run", json=TWO_NODES,
                                           headers=user.headers) for i in range(12)]
        answers = await asyncio.gather(*starts)
        assert sorted(r.status_code for r in answers) == [202] * 3 + [429] * 9
        for r in answers:
            if r.status_code == 429:
                assert_error(r, 429, "too_many_runs")
        # The admitted runs wait for a worker (none runs here): /health/ready says so.
        ready = (await b.get("/health/ready")).json()
        assert ready["mode"] == "queue"
        assert ready["queue"]["depth"] == 3
        assert ready["queue"]["oldest_age_s"] >= 0
        assert ready["workers"]["seen"] == 0


@POSTGRES_ONLY
async def test_a_queued_run_is_cancelled_at_once_by_any_replica(database_url: str) -> None:
    async with replica(database_url) as a, replica(database_url) as b:
        user: Account = await sign_up_and_login(a)
        run_id = (await a.post("/api/v1/execution/run", json=TWO_NODES,
                               headers=user.headers)).json()["run_id"]
        r = await b.post(f"/api/v1/execution/runs/{run_id}/cancel", headers=user.headers)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "cancelled"
        again = await a.post(f"/api/v1/execution/runs/{run_id}/cancel", headers=user.headers)
        assert_error(again, 409, "run_not_active")
        events = (await a.get("/api/v1/events", params={"run_id": run_id},
                              headers=user.headers)).json()["items"]
        assert [e["type"] for e in events] == ["execution.cancelled"]
        # The slot is free again, and the queue is empty.
        assert (await b.get("/health/ready")).json()["queue"]["depth"] == 0


@POSTGRES_ONLY
async def test_login_failures_are_counted_across_replicas(database_url: str) -> None:
    async with replica(database_url, LOGIN_FAILURES_PER_MINUTE=3) as a, \
            replica(database_url, LOGIN_FAILURES_PER_MINUTE=3) as b:
        user = await sign_up_and_login(a)
        for client in (a, b, a):
            r = await client.post("/api/v1/auth/login", json={"identifier": user.username,
                                                              "password": "wrong-password"})
            assert_error(r, 401)
        r = await b.post("/api/v1/auth/login", json={"identifier": user.username,
                                                     "password": "wrong-password"})
        assert_error(r, 429, "too_many_attempts")
        assert 1 <= int(r.headers["retry-after"]) <= 61
        # Another account behind the same address still logs in, on either replica.
        other = await sign_up_and_login(b)
        assert (await a.post("/api/v1/auth/login", json={
            "identifier": other.username, "password": other.password})).status_code == 200
