"""The engine over REST (DESIGN.md §5–§7): event sequences, levels, error propagation, cancel,
timeouts, retries, provider errors, token streaming, validation, limits and run history.

Everything is real: the app with its database (SQLite and PostgreSQL), the event log, a real
uvicorn and `websockets` client for the tunnel, and the real `openai`/`anthropic` SDKs talking
to a fake OpenAI/Anthropic HTTP server on 127.0.0.1 (tests/fake_llm_server.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from app.models import EventLog
from tests.conftest import LiveServer
from tests.engine_helpers import (
    API,
    assert_run_matches_log,
    assert_sequenced,
    create_flow,
    edge,
    engine_settings,
    eventually,
    get_run,
    graph,
    is_node_event,
    node,
    node_events,
    run_events,
    run_flow,
    running_attempts,
    start_run,
    summary,
    trigger,
    wait_for_event,
    wait_run,
)
from tests.fake_llm_server import CHAT_PATH, MESSAGES_PATH, FakeLLMServer
from tests.helpers import Account, assert_error, sign_up_and_login


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, fake_llm: FakeLLMServer) -> dict[str, Any]:
    return engine_settings(fake_llm, **getattr(request, "param", {}))


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await sign_up_and_login(client)


def linear() -> dict[str, Any]:
    return graph(
        [node("p", "initialPrompt", prompt="a red fox"), node("e", "promptEnhancer"),
         node("o", "textOutput", title="result")],
        [edge("p", "e"), edge("e", "o")])


# --- sequences -------------------------------------------------------------------------------
async def test_linear_flow_exact_event_sequence(client: httpx.AsyncClient, app: FastAPI,
                                                alice: Account) -> None:
    run_id, run = await run_flow(client, alice, app, **linear())

    events = await run_events(client, alice, run_id)
    assert summary(events) == [
        ("execution.started",),
        ("execution.node.status", "p", "pending"),
        ("execution.node.status", "e", "pending"),
        ("execution.node.status", "o", "pending"),
        ("execution.node.status", "p", "running"),
        ("execution.node.completed", "p", "completed"),
        ("execution.node.status", "e", "running"),
        ("execution.node.completed", "e", "completed"),
        ("execution.node.status", "o", "running"),
        ("execution.node.completed", "o", "completed"),
        ("execution.completed",),
    ]
    assert_sequenced(events)
    # Nothing else of this user happened meanwhile: the cursor is gapless across the run.
    user_seqs = [e["user_seq"] for e in events]
    assert user_seqs == list(range(user_seqs[0], user_seqs[0] + len(events)))
    started = events[0]["payload"]
    assert started["node_ids"] == ["p", "e", "o"] and started["provider_id"] == "echo"

    # echo answers with the prompt itself, so every output is predictable.
    for event in events[4:10]:
        payload = event["payload"]
        if payload["status"] == "running":
            assert (payload["attempt"], payload["model"]) == (1, "echo-1")
        else:
            assert set(payload) >= {"output", "duration_ms", "model", "tokens"}
            assert payload["model"] == "echo-1" and payload["duration_ms"] >= 0
    enhanced = node_events(events, "e")[-1]["payload"]
    assert enhanced["output"] == {"text": "a red fox", "data": {}}
    assert enhanced["tokens"]["output"] == 3 and enhanced["tokens"]["input"] > 3
    assert node_events(events, "p")[-1]["payload"]["tokens"] == {"input": 0, "output": 0}

    done = events[-1]["payload"]
    assert done["status"] == "succeeded"
    assert done["outputs"] == {"o": {"text": "a red fox", "data": {"characters": 9}}}
    assert done["failed_node_ids"] == [] and done["skipped_node_ids"] == []

    assert run["status"] == "succeeded" and run["error"] is None
    assert run["tokens"] == done["tokens"] == enhanced["tokens"]
    assert [run["nodes"][n]["level"] for n in "peo"] == [0, 1, 2]
    assert run["started_at"] <= run["finished_at"] and run["duration_ms"] >= 0
    await assert_run_matches_log(client, alice, run_id)


async def test_diamond_runs_one_level_concurrently(client: httpx.AsyncClient, app: FastAPI,
                                                   alice: Account,
                                                   fake_llm: FakeLLMServer) -> None:
    # b and c both wait 0.4 s on the provider: run one after the other, one of them would
    # complete before the other started.
    fake_llm.slow_next(2, seconds=0.4)
    g = graph([node("a", "initialPrompt", prompt="seed"), node("b", "promptEnhancer"),
               node("c", "grammarFix"), node("d", "textOutput")],
              [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")])

    run_id, run = await run_flow(client, alice, app, provider_id="openai", **g)

    events = await run_events(client, alice, run_id)
    shape = summary(events)
    running = [shape.index(("execution.node.status", n, "running")) for n in "bc"]
    completed = [shape.index(("execution.node.completed", n, "completed")) for n in "bc"]
    assert max(running) < min(completed), shape
    # Levels follow each other: d starts only after both b and c are done.
    assert shape.index(("execution.node.status", "d", "running")) > max(completed)
    assert len(fake_llm.requests) == 2
    assert run["status"] == "succeeded"
    assert {n: s["level"] for n, s in run["nodes"].items()} == {"a": 0, "b": 1, "c": 1, "d": 2}
    # Several text inputs merge in a stable order: the flow's node order (b before c).
    assert run["outputs"]["d"]["text"] == "reply: seed\n\nreply: seed"
    await assert_run_matches_log(client, alice, run_id)


async def test_failed_node_skips_its_descendants_and_others_go_on(
        client: httpx.AsyncClient, app: FastAPI, alice: Account,
        fake_llm: FakeLLMServer) -> None:
    fake_llm.fail_next(1, status=400)  # the only provider call of the run: pe's
    g = graph(
        [node("a1", "initialPrompt", prompt=""), node("t", "translator", language="French"),
         node("t_out", "textOutput"),
         node("a2", "initialPrompt", prompt="hello"), node("pe", "promptEnhancer"),
         node("pe_out", "textOutput"), node("pe_out2", "textOutput"),
         node("a3", "initialPrompt", prompt="fine"), node("ok", "textOutput"),
         node("join", "textOutput")],
        [edge("a1", "t"), edge("t", "t_out"), edge("a2", "pe"), edge("pe", "pe_out"),
         edge("pe_out", "pe_out2"), edge("a3", "ok"), edge("ok", "join"),
         edge("t_out", "join")])

    run_id, run = await run_flow(client, alice, app, provider_id="openai", **g)

    events = await run_events(client, alice, run_id)
    failed = {e["payload"]["node_id"]: e["payload"] for e in events
              if e["type"] == "execution.node.failed"}
    assert set(failed) == {"t", "pe"}
    # An executor that raises: its message is the error message.
    assert failed["t"]["error"] == {"code": "executor_error",
                                    "message": "translator needs text input"}
    # A non-transient provider answer (400) fails at once: one attempt, one request.
    assert failed["pe"]["error"]["code"] == "provider_bad_request"
    assert failed["pe"]["attempt"] == 1 and running_attempts(events, "pe") == [1]
    assert len(fake_llm.requests) == 1

    skipped = {e["payload"]["node_id"]: e["payload"]["skipped_because"] for e in events
               if e["payload"].get("status") == "skipped"}
    # Transitively skipped nodes name the node that failed, not their skipped parent.
    assert skipped == {"t_out": "t", "pe_out": "pe", "pe_out2": "pe", "join": "t"}
    for node_id in skipped:
        assert [e["payload"]["status"] for e in node_events(events, node_id)] == [
            "pending", "skipped"]
    assert run["nodes"]["ok"]["status"] == "completed"
    assert run["nodes"]["ok"]["output"]["text"] == "fine"

    done = events[-1]
    assert done["type"] == "execution.completed"
    assert done["payload"]["status"] == "partial" == run["status"]
    assert sorted(done["payload"]["failed_node_ids"]) == ["pe", "t"]
    assert sorted(done["payload"]["skipped_node_ids"]) == ["join", "pe_out", "pe_out2", "t_out"]
    await assert_run_matches_log(client, alice, run_id)


# --- cancel, timeouts, retries, provider errors ----------------------------------------------
async def test_cancel_a_running_run(client: httpx.AsyncClient, app: FastAPI, alice: Account,
                                    fake_llm: FakeLLMServer) -> None:
    fake_llm.slow_next(1, seconds=20)
    g = graph([node("a", "initialPrompt", prompt="x"), node("b", "promptEnhancer"),
               node("c", "textOutput"), node("side", "initialPrompt", prompt="y"),
               node("side_out", "textOutput")],
              [edge("a", "b"), edge("b", "c"), edge("side", "side_out")])
    run_id = await start_run(client, alice, provider_id="openai", **g)
    await wait_for_event(client, alice, run_id, lambda e: is_node_event(e, "b", "running"))
    # b's request sits in the fake server's slow answer.
    await eventually(lambda: fake_llm.requests, what="the provider request")

    began = time.monotonic()
    r = await client.post(f"{API}/execution/runs/{run_id}/cancel", headers=alice.headers)
    took = time.monotonic() - began
    assert r.status_code == 202, r.text
    assert r.json() == {"run_id": run_id, "status": "cancelled"}
    assert took < 1.0, took

    run = await wait_run(client, alice, run_id, app)
    events = await run_events(client, alice, run_id)
    last = events[-1]
    assert last["type"] == "execution.cancelled"
    assert sorted(last["payload"]["cancelled_node_ids"]) == ["b", "c"]
    assert run["status"] == "cancelled"
    assert {n: s["status"] for n, s in run["nodes"].items()} == {
        "a": "completed", "b": "cancelled", "c": "cancelled", "side": "completed",
        "side_out": "completed"}
    # Nothing happens after the cancellation.
    assert [e["type"] for e in events].count("execution.cancelled") == 1
    assert not [e for e in events if e["type"] == "execution.completed"]
    await assert_run_matches_log(client, alice, run_id)

    # A run that is over cannot be cancelled again.
    r = await client.post(f"{API}/execution/runs/{run_id}/cancel", headers=alice.headers)
    assert_error(r, 409, "run_not_active")


async def test_node_timeout_fails_with_timeout_after_max_attempts(
        client: httpx.AsyncClient, app: FastAPI, alice: Account,
        fake_llm: FakeLLMServer) -> None:
    fake_llm.slow_next(5, seconds=5)
    g = graph([node("a", "initialPrompt", prompt="slow"),
               node("b", "promptEnhancer", timeout_s=0.3, max_attempts=2),
               node("c", "textOutput")], [edge("a", "b"), edge("b", "c")])

    started = time.monotonic()
    run_id, run = await run_flow(client, alice, app, provider_id="openai", **g)
    assert time.monotonic() - started < 4

    events = await run_events(client, alice, run_id)
    assert running_attempts(events, "b") == [1, 2]
    failed = node_events(events, "b")[-1]["payload"]
    assert failed["status"] == "failed" and failed["attempt"] == 2
    assert failed["error"]["code"] == "timeout"
    assert "0.3" in failed["error"]["message"]
    assert len(fake_llm.requests) == 2  # one request per attempt
    assert run["nodes"]["c"]["status"] == "skipped"
    assert run["status"] == "partial"
    await assert_run_matches_log(client, alice, run_id)


@pytest.mark.parametrize("provider", ["openai", "claude"])
async def test_transient_errors_are_retried(client: httpx.AsyncClient, app: FastAPI,
                                            alice: Account, fake_llm: FakeLLMServer,
                                            provider: str) -> None:
    fake_llm.fail_next(1, status=429)
    fake_llm.fail_next(1, status=500)
    g = graph([node("a", "initialPrompt", prompt="try again"),
               node("b", "promptEnhancer", model="fake-model"), node("c", "textOutput")],
              [edge("a", "b"), edge("b", "c")])

    run_id, run = await run_flow(client, alice, app, provider_id=provider, **g)

    events = await run_events(client, alice, run_id)
    assert running_attempts(events, "b") == [1, 2, 3]
    assert all(e["payload"]["max_attempts"] == 3 for e in node_events(events, "b")
               if e["payload"]["status"] == "running")
    completed = node_events(events, "b")[-1]["payload"]
    assert completed["status"] == "completed" and completed["attempt"] == 3
    assert completed["output"]["text"] == "reply: try again"
    path = CHAT_PATH if provider == "openai" else MESSAGES_PATH
    assert [r.path for r in fake_llm.requests] == [path] * 3
    assert run["status"] == "succeeded" and run["nodes"]["b"]["attempt"] == 3
    assert run["outputs"]["c"]["text"] == "reply: try again"
    await assert_run_matches_log(client, alice, run_id)


@pytest.mark.parametrize(("fault", "code"), [("401", "provider_auth"),
                                             ("malformed", "provider_bad_response")])
async def test_non_transient_provider_errors_fail_at_once(
        client: httpx.AsyncClient, app: FastAPI, alice: Account, fake_llm: FakeLLMServer,
        fault: str, code: str) -> None:
    if fault == "401":
        fake_llm.fail_next(1, status=401)
    else:
        fake_llm.malformed_next(1, "missing_fields")
    g = graph([node("a", "initialPrompt", prompt="x"), node("b", "storyTeller"),
               node("c", "textOutput")], [edge("a", "b"), edge("b", "c")])

    run_id, run = await run_flow(client, alice, app, provider_id="openai", **g)

    events = await run_events(client, alice, run_id)
    assert running_attempts(events, "b") == [1]
    failed = node_events(events, "b")[-1]["payload"]
    assert failed["status"] == "failed" and failed["error"]["code"] == code
    assert "test-key" not in json.dumps(events)
    assert len(fake_llm.requests) == 1
    assert run["status"] == "partial"
    assert run["nodes"]["c"]["skipped_because"] == "b"
    await assert_run_matches_log(client, alice, run_id)


# --- token streaming over the tunnel ----------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [{"LLM_TOKEN_STREAM": True},
                                                {"LLM_TOKEN_STREAM": False}],
                         indirect=True, ids=["stream_on", "stream_off"])
async def test_token_stream_reaches_the_tunnel_and_not_the_log(
        live_server: LiveServer, live_client: httpx.AsyncClient, fake_llm: FakeLLMServer,
        settings_overrides: dict[str, Any]) -> None:
    streaming = settings_overrides["LLM_TOKEN_STREAM"]
    account = await sign_up_and_login(live_client)
    g = graph([node("a", "initialPrompt", prompt="a quick brown fox jumps over the dog"),
               node("b", "promptEnhancer"), node("c", "textOutput")],
              [edge("a", "b"), edge("b", "c")])
    url = f"{live_server.ws_url}?token={account.access_token}"
    async with connect(url, open_timeout=10, ping_interval=None) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ready["type"] == "connection.ready"
        run_id = await start_run(live_client, account, provider_id="openai", **g)
        messages: list[dict[str, Any]] = []
        while not (messages and messages[-1]["type"] == "execution.completed"):
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    [request] = fake_llm.requests
    assert bool(request.json.get("stream")) is streaming
    streams = [m for m in messages if m["type"] == "execution.node.stream"]
    completed = next(m for m in messages if m["type"] == "execution.node.completed"
                     and m["data"]["node_id"] == "b")
    assert completed["data"]["output"]["text"] == "reply: a quick brown fox jumps over the dog"
    persisted = [m for m in messages if "cursor" in m]
    assert [m["data"]["run_seq"] for m in persisted] == list(range(1, len(persisted) + 1))
    if not streaming:
        assert streams == []
    else:
        assert {m["data"]["node_id"] for m in streams} == {"b"}
        assert all(m["data"]["run_id"] == run_id and "cursor" not in m for m in streams)
        text = "".join(m["data"]["delta"] for m in streams)
        assert text == completed["data"]["output"]["text"]
        assert len(streams) >= 2  # the first delta goes out at once, the rest coalesced
        # Deltas come before the node's completion.
        assert messages.index(streams[-1]) < messages.index(completed)

    events = await run_events(live_client, account, run_id)
    assert not [e for e in events if e["type"] == "execution.node.stream"]
    assert len(events) == len(persisted)
    async with live_server.app.state.sessionmaker() as session:
        count = (await session.execute(select(func.count()).select_from(EventLog).where(
            EventLog.event_name == "execution.node.stream"))).scalar_one()
    assert count == 0
    await wait_run(live_client, account, run_id)
    await assert_run_matches_log(live_client, account, run_id)


# --- validation ------------------------------------------------------------------------------
async def test_invalid_graph_lists_every_problem_and_creates_no_run(
        client: httpx.AsyncClient, alice: Account) -> None:
    g = graph(
        [node("x", "textOutput"), node("y", "textOutput"), node("z", "textOutput"),
         node("dup", "textOutput"), node("dup", "initialPrompt"), node("u", "noSuchType"),
         node("t", "translator", language=""), node("slow", "promptEnhancer", timeout_s=-1),
         node("s", "textOutput")],
        [edge("x", "y"), edge("y", "z"), edge("z", "x"), edge("x", "ghost"),
         edge("s", "s")])

    # mistral has no key configured: that is one more problem, reported with the rest.
    r = await trigger(client, alice, provider_id="mistral", **g)

    error = assert_error(r, 422, "invalid_graph")
    details = error["details"]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for problem in details:
        by_code.setdefault(problem["code"], []).append(problem)
    assert set(by_code) == {"cycle", "duplicate_node_id", "dangling_edge", "unknown_node_type",
                            "invalid_node_config", "self_loop", "provider_missing_key"}, details
    [cycle] = by_code["cycle"]
    ring = cycle["nodes"]
    assert sorted(ring) == ["x", "y", "z"]
    start = ring.index("x")
    assert ring[start:] + ring[:start] == ["x", "y", "z"]  # in edge order
    assert by_code["duplicate_node_id"][0]["node_id"] == "dup"
    assert by_code["dangling_edge"][0]["edge_id"] == "e-x-ghost"
    assert by_code["unknown_node_type"][0]["node_id"] == "u"
    assert by_code["self_loop"][0]["node_id"] == "s"
    assert sorted(p["node_id"] for p in by_code["invalid_node_config"]) == ["slow", "t"]
    assert all(p["message"] for p in details)

    r = await client.get(f"{API}/execution/runs", headers=alice.headers)
    assert r.status_code == 200 and r.json()["items"] == []
    r = await client.get(f"{API}/events", params={"type": "execution.*"},
                         headers=alice.headers)
    assert r.json()["items"] == []


async def test_provider_without_key_is_422(client: httpx.AsyncClient, app: FastAPI,
                                           alice: Account) -> None:
    g = graph([node("a", "initialPrompt", prompt="x"), node("b", "storyTeller")],
              [edge("a", "b")])
    r = await trigger(client, alice, provider_id="mistral", **g)  # MISTRAL_API_KEY unset

    error = assert_error(r, 422, "invalid_graph")
    assert [p["code"] for p in error["details"]] == ["provider_missing_key"]
    assert "mistral" in error["details"][0]["message"]
    r = await client.get(f"{API}/execution/runs", headers=alice.headers)
    assert r.json()["items"] == []

    # A flow whose provider is set but whose nodes never call one runs fine.
    _, run = await run_flow(client, alice, app, provider_id="mistral",
                            **graph([node("c", "consistentCharacter", name="Ada")], []))
    assert run["status"] == "succeeded" and run["provider_id"] == "mistral"


@pytest.mark.parametrize("settings_overrides", [{"MAX_RUNS_PER_USER": 1}], indirect=True,
                         ids=["one_run_per_user"])
async def test_concurrent_run_limit_per_user(client: httpx.AsyncClient, app: FastAPI,
                                             alice: Account, fake_llm: FakeLLMServer) -> None:
    fake_llm.slow_next(1, seconds=20)
    slow = graph([node("a", "initialPrompt", prompt="x"), node("b", "promptEnhancer")],
                 [edge("a", "b")])
    quick = graph([node("q", "initialPrompt", prompt="q")], [])
    run_id = await start_run(client, alice, provider_id="openai", **slow)

    r = await trigger(client, alice, **quick)
    assert_error(r, 429, "too_many_runs")
    # The limit is per user: someone else still runs.
    bob = await sign_up_and_login(client)
    _, other = await run_flow(client, bob, app, **quick)
    assert other["status"] == "succeeded"

    r = await client.post(f"{API}/execution/runs/{run_id}/cancel", headers=alice.headers)
    assert r.status_code == 202
    await wait_run(client, alice, run_id, app)
    _, again = await run_flow(client, alice, app, **quick)  # the slot was released
    assert again["status"] == "succeeded"
    r = await client.get(f"{API}/execution/runs", headers=alice.headers)
    assert len(r.json()["items"]) == 2  # the refused trigger left no run behind


# --- history and ownership -------------------------------------------------------------------
async def test_run_history_filters_and_cursor_paging(client: httpx.AsyncClient, app: FastAPI,
                                                     alice: Account) -> None:
    ok = graph([node("a", "initialPrompt", prompt="x"), node("o", "textOutput")],
               [edge("a", "o")])
    bad = graph([node("a", "initialPrompt", prompt=""), node("t", "translator")],
                [edge("a", "t")])
    f1 = await create_flow(client, alice, ok, name="one")
    f2 = await create_flow(client, alice, ok, name="two")
    f3 = await create_flow(client, alice, bad, name="three")
    order = []
    for flow_id in (f1, f2, f1, f3):
        run_id, _ = await run_flow(client, alice, app, flow_id=flow_id)
        order.append(run_id)
    newest_first = list(reversed(order))

    async def listing(**params: Any) -> dict[str, Any]:
        r = await client.get(f"{API}/execution/runs", params=params, headers=alice.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    everything = await listing()
    assert [item["id"] for item in everything["items"]] == newest_first
    assert everything["next_cursor"] is None
    assert [i["id"] for i in (await listing(flow_id=f1))["items"]] == [order[2], order[0]]
    assert {i["flow_id"] for i in (await listing(flow_id=f1))["items"]} == {f1}
    assert [i["id"] for i in (await listing(status="partial"))["items"]] == [order[3]]
    assert len((await listing(status="succeeded"))["items"]) == 3
    assert (await listing(flow_id=f2, status="partial"))["items"] == []

    paged: list[str] = []
    cursor = None
    while True:
        page = await listing(limit=1, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) == 1
        paged.append(page["items"][0]["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == newest_first
    page = await listing(limit=2, flow_id=f1)
    assert len(page["items"]) == 2 and page["next_cursor"] is None
    page = await listing(limit=1, flow_id=f1)
    rest = await listing(limit=1, flow_id=f1, cursor=page["next_cursor"])
    assert [page["items"][0]["id"], rest["items"][0]["id"]] == [order[2], order[0]]
    assert rest["next_cursor"] is None
    assert_error(await client.get(f"{API}/execution/runs", params={"cursor": "nonsense!"},
                                  headers=alice.headers), 400, "invalid_cursor")


async def test_another_users_flow_and_runs_are_404(client: httpx.AsyncClient, app: FastAPI,
                                                   alice: Account) -> None:
    bob = await sign_up_and_login(client)
    flow_id = await create_flow(client, bob, graph([node("a", "initialPrompt", prompt="b")],
                                                   []))
    bobs_run, _ = await run_flow(client, bob, app, flow_id=flow_id)

    assert_error(await trigger(client, alice, flow_id=flow_id), 404, "not_found")
    assert_error(await client.get(f"{API}/execution/runs/{bobs_run}", headers=alice.headers),
                 404, "not_found")
    assert_error(await client.post(f"{API}/execution/runs/{bobs_run}/cancel",
                                   headers=alice.headers), 404, "not_found")
    r = await client.get(f"{API}/execution/runs", params={"flow_id": flow_id},
                         headers=alice.headers)
    assert r.json()["items"] == []
    assert (await list_alice_events(client, alice, bobs_run)) == []
    # A missing flow answers the same.
    r = await trigger(client, alice, flow_id="00000000-0000-0000-0000-000000000000")
    assert_error(r, 404, "not_found")
    assert (await get_run(client, bob, bobs_run))["status"] == "succeeded"


async def list_alice_events(client: httpx.AsyncClient, account: Account,
                            run_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/events", params={"run_id": run_id}, headers=account.headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items
