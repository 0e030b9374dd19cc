"""Token deltas carry the attempt that streamed them (DESIGN.md §5:
`execution.node.stream {run_id, node_id, attempt, delta}`), so a client drops a failed
attempt's text when the next attempt starts. Real uvicorn, the `websockets` client, and the
real OpenAI SDK against the fake server on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.engine_helpers import (
    assert_run_matches_log,
    edge,
    engine_settings,
    graph,
    node,
    run_events,
    running_attempts,
    start_run,
    wait_run,
)
from tests.fake_llm_server import CHAT_PATH, FakeLLMServer, reply_for
from tests.helpers import sign_up_and_login
from tests.tunnel_helpers import ready, ws_connect

PROMPT = "a quick brown fox jumps over the lazy dog"


@pytest.fixture
def settings_overrides(fake_llm: FakeLLMServer) -> dict[str, Any]:
    return engine_settings(fake_llm)


async def test_a_retried_node_streams_attempt_1_then_attempt_2(
        live_server: LiveServer, live_client: httpx.AsyncClient,
        fake_llm: FakeLLMServer) -> None:
    account = await sign_up_and_login(live_client)
    g = graph([node("a", "initialPrompt", prompt=PROMPT), node("b", "promptEnhancer"),
               node("c", "textOutput")], [edge("a", "b"), edge("b", "c")])
    # b's first request streams three pieces of its reply, then the provider fails (an error
    # event inside the stream: transient); the retry succeeds.
    fake_llm.break_stream_next(1, after=3, path=CHAT_PATH)
    async with await ws_connect(live_server, account.access_token) as ws:
        await ready(ws)
        run_id = await start_run(live_client, account, provider_id="openai", **g)
        messages: list[dict[str, Any]] = []
        while not (messages and messages[-1]["type"] == "execution.completed"):
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    assert len(fake_llm.requests_to(CHAT_PATH)) == 2
    streams = [m for m in messages if m["type"] == "execution.node.stream"]
    assert streams and all(set(m["data"]) == {"run_id", "node_id", "attempt", "delta"}
                           and m["data"]["run_id"] == run_id and m["data"]["node_id"] == "b"
                           for m in streams), streams
    attempts = [m["data"]["attempt"] for m in streams]
    # Attempt 1's deltas, then attempt 2's: never interleaved.
    assert attempts == sorted(attempts) and attempts[0] == 1 and attempts[-1] == 2, attempts
    first = "".join(m["data"]["delta"] for m in streams if m["data"]["attempt"] == 1)
    last = "".join(m["data"]["delta"] for m in streams if m["data"]["attempt"] == 2)
    reply = reply_for(PROMPT)
    # What attempt 1 showed was the start of the reply; it broke off before the end.
    assert first and reply.startswith(first) and first != reply, first

    completed = next(m for m in messages if m["type"] == "execution.node.completed"
                     and m["data"]["node_id"] == "b")
    assert completed["data"]["attempt"] == 2
    assert completed["data"]["output"]["text"] == reply
    assert last == reply  # the last attempt's deltas are the node's text

    # Each attempt's deltas come after its own `running` event (and before the next one's),
    # which is when a client drops the failed attempt's text.
    running = {m["data"]["attempt"]: messages.index(m) for m in messages
               if m["type"] == "execution.node.status" and m["data"]["node_id"] == "b"
               and m["data"]["status"] == "running"}
    assert sorted(running) == [1, 2]
    for message in streams:
        position = messages.index(message)
        if message["data"]["attempt"] == 1:
            assert running[1] < position < running[2]
        else:
            assert running[2] < position < messages.index(completed)

    await wait_run(live_client, account, run_id)
    events = await run_events(live_client, account, run_id)
    assert running_attempts(events, "b") == [1, 2]
    assert not [e for e in events if e["type"] == "execution.node.stream"]
    await assert_run_matches_log(live_client, account, run_id)
