"""Partial re-runs (DESIGN.md §6): given `trigger_node_id`, D = the trigger and its descendants
runs; ancestors of D outside D are `cached` (explicit `cached_outputs`, else the outputs of the
flow's latest successful run) and run only when neither has them; nodes outside D and its
ancestors are not part of the run at all."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.engine_helpers import (
    API,
    assert_run_matches_log,
    create_flow,
    edge,
    graph,
    node,
    node_events,
    run_events,
    run_flow,
    summary,
    trigger,
    wait_run,
)
from tests.helpers import Account, assert_error, sign_up_and_login

#   s1 ─┐
#       ├─> m ─> t            trigger m: D = {m, t}; ancestors {s1, s2}
#   s2 ─┤
#       └─> x ─> xo           outside (a sibling branch of s2)
#   u ─> uo                   outside (unrelated)
NODES = ["s1", "s2", "m", "t", "x", "xo", "u", "uo"]


def flow_graph(s1_prompt: str = "one", s2_prompt: str = "two") -> dict[str, Any]:
    return graph(
        [node("s1", "initialPrompt", prompt=s1_prompt),
         node("s2", "initialPrompt", prompt=s2_prompt),
         node("m", "promptEnhancer"), node("t", "textOutput"),
         node("x", "grammarFix"), node("xo", "textOutput"),
         node("u", "initialPrompt", prompt="unrelated"), node("uo", "textOutput")],
        [edge("s1", "m"), edge("s2", "m"), edge("m", "t"), edge("s2", "x"), edge("x", "xo"),
         edge("u", "uo")])


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await sign_up_and_login(client)


async def update_flow(client: httpx.AsyncClient, account: Account, flow_id: str,
                      graph_data: dict[str, Any]) -> None:
    r = await client.put(f"{API}/flows/{flow_id}", json={"graph_data": graph_data},
                         headers=account.headers)
    assert r.status_code == 200, r.text


def statuses(run: dict[str, Any]) -> dict[str, str]:
    return {node_id: state["status"] for node_id, state in run["nodes"].items()}


def touched_nodes(events: list[dict[str, Any]]) -> set[str]:
    return {e["payload"]["node_id"] for e in events if "node_id" in e["payload"]}


async def test_rerun_from_a_node_reuses_the_latest_successful_run(
        client: httpx.AsyncClient, app: FastAPI, alice: Account) -> None:
    flow_id = await create_flow(client, alice, flow_graph("one", "two"))
    _, first = await run_flow(client, alice, app, flow_id=flow_id)
    assert first["status"] == "succeeded" and set(first["nodes"]) == set(NODES)
    assert first["outputs"]["t"]["text"] == "one\n\ntwo"
    # A second full run after an edit: its outputs are the latest successful ones.
    await update_flow(client, alice, flow_id, flow_graph("uno", "dos"))
    _, second = await run_flow(client, alice, app, flow_id=flow_id)
    assert second["outputs"]["t"]["text"] == "uno\n\ndos"
    # A failed run later is not a successful one: it must not be the source.
    r = await trigger(client, alice, flow_id=flow_id, trigger_node_id="m",
                      cached_outputs={"s1": {"text": ""}, "s2": {"text": " "}})
    assert r.status_code == 202
    failed_run = r.json()["run_id"]
    await run_flow_wait(client, alice, app, failed_run, "partial")
    # The flow changes again; a re-run from m must still use the stored outputs, not re-run
    # the sources with the new prompts.
    await update_flow(client, alice, flow_id, flow_graph("CHANGED-1", "CHANGED-2"))

    run_id, rerun = await run_flow(client, alice, app, flow_id=flow_id, trigger_node_id="m")

    assert rerun["status"] == "succeeded" and rerun["trigger_node_id"] == "m"
    assert statuses(rerun) == {"s1": "cached", "s2": "cached", "m": "completed",
                               "t": "completed"}
    assert rerun["nodes"]["s1"]["output"] == second["nodes"]["s1"]["output"]
    assert rerun["nodes"]["s2"]["output"] == second["nodes"]["s2"]["output"]
    assert rerun["outputs"] == {"t": {"text": "uno\n\ndos", "data": {"characters": 8}}}

    events = await run_events(client, alice, run_id)
    # Nodes outside D and its ancestors have no events at all.
    assert touched_nodes(events) == {"s1", "s2", "m", "t"}
    assert events[0]["payload"]["node_ids"] == ["s1", "s2", "m", "t"]
    assert events[0]["payload"]["trigger_node_id"] == "m"
    for cached in ("s1", "s2"):
        # Announced pending, then cached with its output; never running.
        assert [e["payload"]["status"] for e in node_events(events, cached)] == [
            "pending", "cached"]
        assert node_events(events, cached)[-1]["payload"]["output"] == \
            second["nodes"][cached]["output"]
    assert summary(events)[-5:] == [
        ("execution.node.status", "m", "running"),
        ("execution.node.completed", "m", "completed"),
        ("execution.node.status", "t", "running"),
        ("execution.node.completed", "t", "completed"),
        ("execution.completed",)]
    await assert_run_matches_log(client, alice, run_id)


async def run_flow_wait(client: httpx.AsyncClient, account: Account, app: FastAPI,
                        run_id: str, expected: str) -> None:
    run = await wait_run(client, account, run_id, app)
    assert run["status"] == expected, run


async def test_explicit_cached_outputs_override_the_stored_ones(
        client: httpx.AsyncClient, app: FastAPI, alice: Account) -> None:
    flow_id = await create_flow(client, alice, flow_graph())
    await run_flow(client, alice, app, flow_id=flow_id)

    run_id, rerun = await run_flow(
        client, alice, app, flow_id=flow_id, trigger_node_id="x",
        cached_outputs={"s2": {"text": "OVERRIDE", "data": {"source": "client"}}})

    # D = {x, xo}; the only ancestor is s2, taken from the request, not the stored run.
    assert statuses(rerun) == {"s2": "cached", "x": "completed", "xo": "completed"}
    assert rerun["nodes"]["s2"]["output"] == {"text": "OVERRIDE", "data": {"source": "client"}}
    assert rerun["outputs"]["xo"]["text"] == "OVERRIDE"
    events = await run_events(client, alice, run_id)
    assert touched_nodes(events) == {"s2", "x", "xo"}
    await assert_run_matches_log(client, alice, run_id)


async def test_without_stored_run_or_cached_output_ancestors_run(
        client: httpx.AsyncClient, app: FastAPI, alice: Account) -> None:
    flow_id = await create_flow(client, alice, flow_graph())

    run_id, rerun = await run_flow(client, alice, app, flow_id=flow_id, trigger_node_id="m")
    assert statuses(rerun) == {"s1": "completed", "s2": "completed", "m": "completed",
                               "t": "completed"}
    assert rerun["outputs"]["t"]["text"] == "one\n\ntwo"
    events = await run_events(client, alice, run_id)
    assert touched_nodes(events) == {"s1", "s2", "m", "t"}
    await assert_run_matches_log(client, alice, run_id)

    # Mixed: one ancestor given by the client, the other has nothing and runs.
    g = flow_graph()
    run_id, mixed = await run_flow(client, alice, app, nodes=g["nodes"], edges=g["edges"],
                                   trigger_node_id="m", cached_outputs={"s1": {"text": "given"}})
    assert statuses(mixed) == {"s1": "cached", "s2": "completed", "m": "completed",
                               "t": "completed"}
    assert mixed["outputs"]["t"]["text"] == "given\n\ntwo"
    await assert_run_matches_log(client, alice, run_id)


async def test_a_deep_trigger_runs_only_what_it_needs(client: httpx.AsyncClient, app: FastAPI,
                                                      alice: Account) -> None:
    # a -> b -> c -> d: trigger d with a stored run → only c is cached (b and a feed nobody
    # who runs, so they are left out); without outputs the whole chain upstream runs.
    chain = graph([node("a", "initialPrompt", prompt="A"), node("b", "grammarFix"),
                   node("c", "promptEnhancer"), node("d", "textOutput")],
                  [edge("a", "b"), edge("b", "c"), edge("c", "d")])
    flow_id = await create_flow(client, alice, chain)
    await run_flow(client, alice, app, flow_id=flow_id)

    run_id, rerun = await run_flow(client, alice, app, flow_id=flow_id, trigger_node_id="d")
    assert statuses(rerun) == {"c": "cached", "d": "completed"}
    assert rerun["outputs"]["d"]["text"] == "A"
    await assert_run_matches_log(client, alice, run_id)


async def test_unknown_trigger_node_is_422_and_creates_no_run(
        client: httpx.AsyncClient, alice: Account) -> None:
    flow_id = await create_flow(client, alice, flow_graph())

    r = await trigger(client, alice, flow_id=flow_id, trigger_node_id="nope")
    error = assert_error(r, 422, "invalid_graph")
    assert [(p["code"], p.get("node_id")) for p in error["details"]] == [
        ("unknown_trigger_node", "nope")]
    r = await trigger(client, alice, flow_id=flow_id, trigger_node_id="m",
                      cached_outputs={"ghost": {"text": "x"}, "s1": {"text": 5}})
    error = assert_error(r, 422, "invalid_graph")
    assert sorted(p["code"] for p in error["details"]) == ["invalid_cached_output",
                                                           "unknown_cached_node"]
    r = await client.get(f"{API}/execution/runs", headers=alice.headers)
    assert r.json()["items"] == []
