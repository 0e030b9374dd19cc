"""Ignored config keys are reported, not silent (DESIGN.md §3, §6): a node `data` key that
neither the executor's config nor the common fields know is ignored, and named in the run's
202 body, in `execution.accepted` and in `execution.started`. A builder's `label` is not."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import LiveServer
from tests.engine_helpers import (
    API,
    create_flow,
    edge,
    graph,
    node,
    run_events,
    trigger,
    wait_run,
)
from tests.helpers import sign_up_and_login
from tests.test_engine_e2e import open_tunnel, run_over


def misspelt_flow() -> dict[str, Any]:
    # `text` where initialPrompt wants `prompt`; `colour` on the output; both nodes carry a
    # builder's `label` (node() adds it) and a common field, which are not reported.
    return graph(
        [node("p", "initialPrompt", text="a lighthouse", max_attempts=2),
         node("o", "textOutput", colour="red", model="m1")],
        [edge("p", "o")])


EXPECTED = [{"node_id": "p", "code": "unknown_config_key", "key": "text"},
            {"node_id": "o", "code": "unknown_config_key", "key": "colour"}]


async def test_rest_202_and_the_started_event_carry_the_warnings(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    r = await trigger(client, account, **{k: v for k, v in misspelt_flow().items()
                                          if k in ("nodes", "edges")})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["warnings"] == EXPECTED
    run = await wait_run(client, account, body["run_id"], app)
    # Still ignored: the run went on and the prompt came out empty.
    assert run["status"] == "succeeded", run
    started = (await run_events(client, account, body["run_id"]))[0]
    assert started["type"] == "execution.started"
    assert started["payload"]["warnings"] == EXPECTED


async def test_a_clean_graph_has_no_warnings(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await sign_up_and_login(client)
    flow_id = await create_flow(client, account, graph(
        [node("p", "initialPrompt", prompt="x", timeout_s=5), node("o", "textOutput")],
        [edge("p", "o")]))
    r = await trigger(client, account, flow_id=flow_id)
    assert r.status_code == 202, r.text
    assert r.json()["warnings"] == []
    await wait_run(client, account, r.json()["run_id"], app)
    started = (await run_events(client, account, r.json()["run_id"]))[0]
    assert started["payload"]["warnings"] == []


async def test_execution_accepted_over_the_tunnel_carries_the_warnings(
    live_server: LiveServer, live_client: httpx.AsyncClient,
) -> None:
    account = await sign_up_and_login(live_client)
    flow_id = await create_flow(live_client, account, misspelt_flow())
    ws, tunnel = await open_tunnel(live_server, account)
    async with ws:
        await tunnel.send("execution.start", {"flow_id": flow_id}, request_id="w1")
        accepted = await tunnel.until(lambda m: m["type"] == "execution.accepted")
        assert accepted["data"]["request_id"] == "w1"
        assert accepted["data"]["warnings"] == EXPECTED
        run_id = accepted["data"]["run_id"]
        await tunnel.until(run_over(run_id))
        started = next(m for m in tunnel.run_events(run_id)
                       if m["type"] == "execution.started")
        assert started["data"]["warnings"] == EXPECTED
    r = await live_client.get(f"{API}/execution/runs/{run_id}", headers=account.headers)
    assert r.json()["status"] == "succeeded"
