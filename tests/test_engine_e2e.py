"""The engine end to end on a real uvicorn (DESIGN.md §4–§6): flows saved over REST and run
through REST and through the WebSocket tunnel, cancel over the tunnel, bad `execution.start`
bodies, and recovery of runs a dead server process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from app.core.config import Settings
from app.main import create_app
from app.models import EventLog, Run
from tests.conftest import ROOT, LiveServer, free_port
from tests.engine_helpers import (
    API,
    assert_run_matches_log,
    create_flow,
    edge,
    engine_settings,
    eventually,
    get_run,
    graph,
    is_node_event,
    node,
    run_events,
    start_run,
    wait_for_event,
    wait_run,
)
from tests.fake_llm_server import FakeLLMServer
from tests.helpers import Account, sign_up_and_login


@pytest.fixture
def settings_overrides(fake_llm: FakeLLMServer) -> dict[str, Any]:
    return engine_settings(fake_llm)


def story_flow() -> dict[str, Any]:
    return graph(
        [node("hero", "consistentCharacter", name="Ada", personality="curious"),
         node("p", "initialPrompt", prompt="a lighthouse at night"),
         node("e", "promptEnhancer"), node("o", "textOutput")],
        [edge("hero", "p", targetHandle="adapters"), edge("p", "e"), edge("e", "o")])


class Tunnel:
    """A `websockets` client on the tunnel that keeps everything it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    async def send(self, type_: str, data: dict[str, Any], **extra: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, "data": data, **extra}))

    async def until(self, predicate: Callable[[dict[str, Any]], bool],
                    within: float = 10.0) -> dict[str, Any]:
        """Read until a message matches; returns it (everything read is kept)."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching message; got {self.received[-5:]}"
            message = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            self.received.append(message)
            if predicate(message):
                return message

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        return [m for m in self.received
                if "cursor" in m and m["data"].get("run_id") == run_id]


async def open_tunnel(server: LiveServer, account: Account) -> tuple[ClientConnection, Tunnel]:
    ws = await connect(f"{server.ws_url}?token={account.access_token}", open_timeout=10,
                       close_timeout=2, ping_interval=None)
    tunnel = Tunnel(ws)
    ready = await tunnel.until(lambda m: True)
    assert ready["type"] == "connection.ready" and ready["data"]["user_id"] == account.id
    return ws, tunnel


def run_over(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] in ("execution.completed", "execution.failed",
                                   "execution.cancelled") and m["data"].get("run_id") == run_id


def assert_tunnel_equals_log(tunnel_events: list[dict[str, Any]],
                             logged: list[dict[str, Any]]) -> None:
    """The tunnel delivered exactly the logged events, in run_seq order."""
    assert [m["data"]["run_seq"] for m in tunnel_events] == list(
        range(1, len(tunnel_events) + 1))
    assert len(tunnel_events) == len(logged)
    for message, event in zip(tunnel_events, logged, strict=True):
        assert message["type"] == event["type"]
        assert message["cursor"] == event["user_seq"]
        assert message["data"]["run_seq"] == event["run_seq"]
        data = {k: v for k, v in message["data"].items() if k not in ("run_id", "run_seq")}
        assert data == event["payload"]


async def test_flow_runs_over_rest_and_over_the_tunnel(live_server: LiveServer,
                                                       live_client: httpx.AsyncClient,
                                                       fake_llm: FakeLLMServer) -> None:
    account = await sign_up_and_login(live_client)
    flow_id = await create_flow(live_client, account, story_flow(), provider_id="openai")
    ws, tunnel = await open_tunnel(live_server, account)
    async with ws:
        # 1. Triggered over REST: the events reach the tunnel.
        rest_run = await start_run(live_client, account, flow_id=flow_id)
        await tunnel.until(run_over(rest_run))
        # 2. Triggered over the tunnel.
        await tunnel.send("execution.start", {"flow_id": flow_id}, request_id="req-1")
        accepted = await tunnel.until(lambda m: m["type"] == "execution.accepted")
        assert accepted["data"]["request_id"] == "req-1"
        assert accepted["data"]["status"] == "queued"
        ws_run = accepted["data"]["run_id"]
        assert ws_run != rest_run
        done = await tunnel.until(run_over(ws_run))
        # request_id may also travel inside the body (the REST body plus a request_id).
        await tunnel.send("execution.start", {"flow_id": flow_id, "request_id": "req-2"})
        accepted = await tunnel.until(lambda m: m["type"] == "execution.accepted")
        assert accepted["data"]["request_id"] == "req-2"
        await tunnel.until(run_over(accepted["data"]["run_id"]))

    assert done["type"] == "execution.completed"
    assert done["data"]["status"] == "succeeded"
    for run_id in (rest_run, ws_run):
        logged = await run_events(live_client, account, run_id)
        assert_tunnel_equals_log(tunnel.run_events(run_id), logged)
        run, _ = await assert_run_matches_log(live_client, account, run_id)
        assert run["flow_id"] == flow_id and run["provider_id"] == "openai"
        # The persona fed initialPrompt over an adapter edge, so it called the model.
        assert run["outputs"]["o"]["text"].startswith(
            "reply: reply: Base prompt:\na lighthouse at night")
        assert "Character: Ada" in run["outputs"]["o"]["text"]
    # Per run: initialPrompt (it has an adapter) and promptEnhancer call the model.
    assert len(fake_llm.requests) == 3 * 2
    # The cursor of the tunnel is gapless across everything it delivered.
    cursors = [m["cursor"] for m in tunnel.received if "cursor" in m]
    assert cursors == list(range(cursors[0], cursors[0] + len(cursors)))


async def test_cancel_over_the_tunnel(live_server: LiveServer, live_client: httpx.AsyncClient,
                                      fake_llm: FakeLLMServer) -> None:
    account = await sign_up_and_login(live_client)
    fake_llm.slow_next(1, seconds=20)
    g = graph([node("p", "initialPrompt", prompt="x"), node("e", "storyTeller"),
               node("o", "textOutput")], [edge("p", "e"), edge("e", "o")])
    ws, tunnel = await open_tunnel(live_server, account)
    async with ws:
        await tunnel.send("execution.start", {**g, "provider_id": "openai"}, request_id="go")
        run_id = (await tunnel.until(lambda m: m["type"] == "execution.accepted"))["data"][
            "run_id"]
        await tunnel.until(lambda m: m["type"] == "execution.node.status"
                           and m["data"]["node_id"] == "e" and m["data"]["status"] == "running")
        await eventually(lambda: fake_llm.requests, what="the provider request")

        began = time.monotonic()
        await tunnel.send("execution.cancel", {"run_id": run_id}, request_id="stop")
        wanted = {"execution.cancelled", "execution.cancel.accepted"}
        got: dict[str, dict[str, Any]] = {}
        while set(got) != wanted:
            message = await tunnel.until(lambda m: m["type"] in wanted, within=1.0)
            got[message["type"]] = message
        assert time.monotonic() - began < 1.0
        cancelled, reply = got["execution.cancelled"], got["execution.cancel.accepted"]
        assert reply["data"] == {"run_id": run_id, "status": "cancelled", "request_id": "stop"}
        assert sorted(cancelled["data"]["cancelled_node_ids"]) == ["e", "o"]
        # Cancelling it again: an error, and the tunnel carries on.
        await tunnel.send("execution.cancel", {"run_id": run_id}, request_id="again")
        error = await tunnel.until(lambda m: m["type"] == "error")
        assert error["data"]["code"] == "run_not_active"
        assert error["data"]["request_id"] == "again"

    run = await wait_run(live_client, account, run_id)
    assert run["status"] == "cancelled"
    assert_tunnel_equals_log(tunnel.run_events(run_id),
                             await run_events(live_client, account, run_id))
    await assert_run_matches_log(live_client, account, run_id)


async def test_bad_start_bodies_get_errors_and_the_tunnel_stays_open(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    other = await sign_up_and_login(live_client)
    others_flow = await create_flow(live_client, other,
                                    graph([node("a", "initialPrompt", prompt="x")], []))
    cycle = graph([node("a", "textOutput"), node("b", "textOutput"), node("c", "nope")],
                  [edge("a", "b"), edge("b", "a")])
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "validation_error"),  # neither flow_id nor nodes
        ({"flow_id": "not-a-uuid"}, "validation_error"),
        ({"nodes": [], "flow_id": others_flow}, "validation_error"),  # both
        ({"nodes": [], "surprise": True}, "validation_error"),
        ({"flow_id": others_flow}, "not_found"),  # another user's flow
        ({"flow_id": str(uuid.uuid4())}, "not_found"),
        (cycle, "invalid_graph"),
        ({**graph([node("a", "textOutput")], []), "trigger_node_id": "zz"}, "invalid_graph"),
    ]
    ws, tunnel = await open_tunnel(live_server, account)
    async with ws:
        for i, (body, code) in enumerate(cases):
            await tunnel.send("execution.start", body, request_id=f"bad-{i}")
            error = await tunnel.until(lambda m: m["type"] in ("error", "execution.accepted"))
            assert error["type"] == "error", (body, error)
            assert error["data"]["code"] == code, (body, error)
            assert error["data"]["request_id"] == f"bad-{i}"
            assert error["data"]["message"]
        invalid = [m for m in tunnel.received if m["type"] == "error"
                   and m["data"]["code"] == "invalid_graph"]
        assert {p["code"] for p in invalid[0]["data"]["details"]} == {"cycle",
                                                                      "unknown_node_type"}
        await tunnel.send("execution.cancel", {"run_id": "nope"}, request_id="c1")
        error = await tunnel.until(lambda m: m["type"] == "error")
        assert (error["data"]["code"], error["data"]["request_id"]) == ("validation_error", "c1")
        await tunnel.send("execution.cancel", {"run_id": str(uuid.uuid4())}, request_id="c2")
        error = await tunnel.until(lambda m: m["type"] == "error")
        assert (error["data"]["code"], error["data"]["request_id"]) == ("not_found", "c2")
        # Still open and answering.
        await tunnel.send("ping", {"n": 1})
        assert (await tunnel.until(lambda m: m["type"] == "pong"))["data"] == {"n": 1}
        # And a good start still works on the same socket.
        await tunnel.send("execution.start", graph([node("a", "initialPrompt", prompt="ok")],
                                                   []), request_id="good")
        accepted = await tunnel.until(lambda m: m["type"] == "execution.accepted")
        assert accepted["data"]["request_id"] == "good"
        await tunnel.until(run_over(accepted["data"]["run_id"]))
    r = await live_client.get(f"{API}/execution/runs", headers=account.headers)
    assert len(r.json()["items"]) == 1  # the bad bodies created nothing


# --- restart recovery --------------------------------------------------------------------------
async def test_a_run_left_by_a_killed_server_is_closed_at_start_up(
        database_url: str, settings: Settings, fake_llm: FakeLLMServer,
        tmp_path: Path) -> None:
    """A real server process dies (SIGKILL) in the middle of a run; a new app on the same
    database closes the run as failed/interrupted before it serves anything."""
    port = free_port()
    env = {**os.environ, "ENV": "test", "DATABASE_URL": database_url,
           "JWT_SECRET": settings.JWT_SECRET, "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "WARNING",
           "OPENAI_API_KEY": settings.OPENAI_API_KEY, "OPENAI_BASE_URL": settings.OPENAI_BASE_URL}
    log = (tmp_path / "server.log").open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    fake_llm.slow_next(1, seconds=60)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, (tmp_path / "server.log").read_text()
                try:
                    if (await c.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not start"
                await asyncio.sleep(0.1)
            account = await sign_up_and_login(c)
            g = graph([node("p", "initialPrompt", prompt="x"), node("e", "storyTeller"),
                       node("o", "textOutput")], [edge("p", "e"), edge("e", "o")])
            run_id = await start_run(c, account, provider_id="openai", **g)
            await wait_for_event(c, account, run_id, lambda e: is_node_event(e, "e", "running"))
            before = await run_events(c, account, run_id)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)  # no lifespan shutdown, no cancel records
        await asyncio.wait_for(process.wait(), 10)
        log.close()

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        # Start-up is over and not one request was served: the run is already closed.
        async with application.state.sessionmaker() as session:
            run = (await session.execute(select(Run).where(Run.id == uuid.UUID(run_id)))
                   ).scalar_one()
            last = (await session.execute(
                select(EventLog).where(EventLog.run_id == run.id)
                .order_by(EventLog.run_seq.desc()).limit(1))).scalar_one()
        assert run.status == "failed"
        assert run.error is not None and run.error["code"] == "interrupted"
        assert last.event_name == "execution.failed"
        assert last.payload["error"]["code"] == "interrupted"
        # "e" was running and "o" pending: each is closed by its own `cancelled` event.
        assert last.run_seq == len(before) + 3

        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            stored = await get_run(c, account, run_id)
            assert stored["status"] == "failed"
            assert stored["error"]["code"] == "interrupted"
            events = await run_events(c, account, run_id)
            assert [e["type"] for e in events[:len(before)]] == [e["type"] for e in before]
            closing = events[len(before):-1]
            assert [(e["payload"]["node_id"], e["payload"]["status"],
                     e["payload"]["reason"]) for e in closing] == [
                ("e", "cancelled", "interrupted"), ("o", "cancelled", "interrupted")]
            assert stored["nodes"]["e"]["status"] == "cancelled"
            assert stored["nodes"]["o"]["status"] == "cancelled"
            await assert_run_matches_log(c, account, run_id)
