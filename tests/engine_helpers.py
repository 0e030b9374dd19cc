"""Helpers for the engine tests (runs, partial re-runs, plugins, end to end): graph builders,
run triggers and read-backs through the real REST API, and the rebuild of a run's state from
its events alone (DESIGN.md §5: the log is the source of truth)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from app.modules.execution.manager import ExecutionManager
from tests.helpers import Account

API = "/api/v1"
TERMINAL_RUN_STATUSES = {"succeeded", "partial", "failed", "cancelled"}
TERMINAL_RUN_EVENTS = {"execution.completed", "execution.failed", "execution.cancelled"}
# Settings every engine test wants: fast retries, the real SDKs pointed at the fake server.
FAKE_KEY = "test-key-0123456789"


def engine_settings(fake_llm: Any, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "RETRY_BASE_DELAY_S": 0.01, "RETRY_MAX_DELAY_S": 0.02,
    }
    values.update(extra)
    return values


# --- graphs ------------------------------------------------------------------------------------
def node(node_id: str, type_: str, **data: Any) -> dict[str, Any]:
    # What React Flow's toObject() gives, UI keys included: the engine must ignore them.
    return {"id": node_id, "type": type_, "data": {"label": node_id, **data},
            "position": {"x": 0, "y": 0}, "measured": {"width": 100, "height": 40},
            "selected": False}


def edge(source: str, target: str, **handles: Any) -> dict[str, Any]:
    return {"id": f"e-{source}-{target}", "source": source, "target": target, **handles}


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": nodes, "edges": edges, "viewport": {"x": 0, "y": 0, "zoom": 1}}


# --- REST --------------------------------------------------------------------------------------
async def create_flow(client: httpx.AsyncClient, account: Account, graph_data: dict[str, Any],
                      *, name: str = "flow", provider_id: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "graph_data": graph_data}
    if provider_id is not None:
        body["provider_id"] = provider_id
    r = await client.post(f"{API}/flows", json=body, headers=account.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def trigger(client: httpx.AsyncClient, account: Account, **body: Any) -> httpx.Response:
    return await client.post(f"{API}/execution/run", json=body, headers=account.headers)


async def start_run(client: httpx.AsyncClient, account: Account, **body: Any) -> str:
    r = await trigger(client, account, **body)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued", r.text
    return str(r.json()["run_id"])


async def wait_run(client: httpx.AsyncClient, account: Account, run_id: str,
                   app: FastAPI | None = None, within: float = 20.0) -> dict[str, Any]:
    """Wait until the run is over; returns GET /execution/runs/{id}."""
    if app is not None:
        manager = app.state.registry.get(ExecutionManager)
        await asyncio.wait_for(manager.wait(uuid.UUID(run_id)), within)
    deadline = time.monotonic() + within
    while True:
        run = await get_run(client, account, run_id)
        if run["status"] in TERMINAL_RUN_STATUSES:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        await asyncio.sleep(0.02)


async def run_flow(client: httpx.AsyncClient, account: Account, app: FastAPI | None = None,
                   **body: Any) -> tuple[str, dict[str, Any]]:
    run_id = await start_run(client, account, **body)
    return run_id, await wait_run(client, account, run_id, app)


async def get_run(client: httpx.AsyncClient, account: Account, run_id: str) -> dict[str, Any]:
    r = await client.get(f"{API}/execution/runs/{run_id}", headers=account.headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def list_events(client: httpx.AsyncClient, account: Account,
                      **params: Any) -> list[dict[str, Any]]:
    """Every event the filters match, following the cursor to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 1000}
        if cursor is not None:
            query["cursor"] = cursor
        r = await client.get(f"{API}/events", params=query, headers=account.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def run_events(client: httpx.AsyncClient, account: Account,
                     run_id: str) -> list[dict[str, Any]]:
    return await list_events(client, account, run_id=run_id)


async def wait_for_event(client: httpx.AsyncClient, account: Account, run_id: str,
                         predicate: Any, within: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        for event in await run_events(client, account, run_id):
            if predicate(event):
                return event
        assert time.monotonic() < deadline, "the awaited event never came"
        await asyncio.sleep(0.02)


async def eventually(predicate: Any, within: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate()` until it holds (for state another thread or process changes)."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        await asyncio.sleep(0.01)


def is_node_event(event: dict[str, Any], node_id: str, status: str) -> bool:
    return event["payload"].get("node_id") == node_id and event["payload"].get(
        "status") == status


# --- event log analysis ------------------------------------------------------------------------
def summary(events: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(type, node_id?, status?) per event: the shape of a run's log."""
    out: list[tuple[str, ...]] = []
    for event in events:
        payload = event["payload"]
        if "node_id" in payload:
            out.append((event["type"], payload["node_id"], payload["status"]))
        else:
            out.append((event["type"],))
    return out


def node_events(events: list[dict[str, Any]], node_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["payload"].get("node_id") == node_id]


def running_attempts(events: list[dict[str, Any]], node_id: str) -> list[int]:
    return [e["payload"]["attempt"] for e in node_events(events, node_id)
            if e["payload"]["status"] == "running"]


def assert_sequenced(events: list[dict[str, Any]]) -> None:
    """run_seq is 1..N without a gap; user_seq strictly increasing (and, no other activity of
    the user interleaving, consecutive)."""
    assert [e["run_seq"] for e in events] == list(range(1, len(events) + 1)), \
        [e["run_seq"] for e in events]
    user_seqs = [e["user_seq"] for e in events]
    assert user_seqs == sorted(set(user_seqs)), user_seqs


def rebuild(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's state from its events alone (the way an auditor or a client would fold them)."""
    state: dict[str, Any] = {"status": None, "nodes": {}, "outputs": None, "error": None,
                             "failed_node_ids": None, "skipped_node_ids": None, "tokens": None}
    for event in sorted(events, key=lambda e: e["run_seq"]):
        kind, payload = event["type"], event["payload"]
        if kind == "execution.started":
            state["status"] = "running"
        elif "node_id" in payload:
            nodes = state["nodes"]
            current = nodes.setdefault(payload["node_id"], {
                "status": None, "attempt": 0, "output": None, "error": None,
                "skipped_because": None, "model": None, "duration_ms": None,
                "tokens": {"input": 0, "output": 0}})
            current["status"] = payload["status"]
            for key in ("attempt", "output", "error", "skipped_because", "model",
                        "duration_ms", "tokens"):
                if key in payload:
                    current[key] = payload[key]
        elif kind == "execution.completed":
            state.update(status=payload["status"], outputs=payload["outputs"],
                         failed_node_ids=payload["failed_node_ids"],
                         skipped_node_ids=payload["skipped_node_ids"],
                         tokens=payload.get("tokens"))
        elif kind == "execution.failed":
            state.update(status="failed", error=payload["error"])
        elif kind == "execution.cancelled":
            state.update(status="cancelled", outputs=payload.get("outputs"))
    return state


async def assert_run_matches_log(client: httpx.AsyncClient, account: Account,
                                 run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """GET /execution/runs/{id} equals the state rebuilt from GET /events?run_id=… alone."""
    run = await get_run(client, account, run_id)
    events = await run_events(client, account, run_id)
    assert events, "a run without events"
    assert_sequenced(events)
    assert {e["run_id"] for e in events} == {run_id}
    built = rebuild(events)

    assert run["status"] == built["status"]
    assert set(run["nodes"]) == set(built["nodes"])
    for node_id, stored in run["nodes"].items():
        folded = built["nodes"][node_id]
        for key in ("status", "output", "error", "skipped_because"):
            assert stored[key] == folded[key], (node_id, key, stored, folded)
        if folded["status"] in ("completed", "failed", "running"):
            assert stored["attempt"] == folded["attempt"], (node_id, stored, folded)
        if folded["status"] in ("completed", "failed"):
            assert stored["duration_ms"] == folded["duration_ms"], (node_id, stored, folded)
            assert stored["duration_ms"] >= 0
            assert stored["started_at"] is not None and stored["finished_at"] is not None
            assert stored["started_at"] <= stored["finished_at"]
        if folded["status"] == "completed":
            assert stored["model"] == folded["model"]
            assert stored["tokens"] == folded["tokens"], (node_id, stored, folded)
    if built["failed_node_ids"] is not None:  # execution.completed
        assert run["outputs"] == built["outputs"]
        assert sorted(run["failed_node_ids"]) == sorted(built["failed_node_ids"])
        assert sorted(run["skipped_node_ids"]) == sorted(built["skipped_node_ids"])
        assert run["tokens"] == built["tokens"]
        completed = [n for n in built["nodes"].values() if n["status"] == "completed"]
        assert run["tokens"]["output"] >= sum(n["tokens"]["output"] for n in completed)
    if built["status"] == "failed":
        assert run["error"] == built["error"]
    if run["status"] in TERMINAL_RUN_STATUSES:
        assert (run["started_at"] and run["finished_at"]) or run["status"] == "failed"
    return run, events
