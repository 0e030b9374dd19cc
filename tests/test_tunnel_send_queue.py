"""The tunnel's send queue is bounded in bytes (DESIGN.md §4, `WS_SEND_QUEUE_BYTES`, as
Centrifugo's client queue): a reader that stopped reading is closed with 4409 whether its
events are few and large or many and small, then resumes from its cursor and gets exactly the
rest; and the default bound holds a 5,000-node run's start burst.

Real uvicorn on 127.0.0.1, the `websockets` client, the real database. A stopped reader is a
client with a tiny TCP receive window that buffers one frame; the kernel still absorbs a few
megabytes (the server's send buffer grows on its own) before `websocket.send` blocks and the
app-level queue, where the bound is checked, starts to fill. So the floods below run until the
server drops the tunnel, with a generous cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.core.config import Settings
from app.core.events import Event
from app.core.ws import ConnectionManager, Tunnel, encode
from tests.conftest import LiveServer
from tests.engine_helpers import engine_settings, list_events, start_run
from tests.fake_llm_server import CHAT_PATH, FakeLLMServer
from tests.helpers import Account, sign_up_and_login
from tests.tunnel_helpers import (
    Incarnation,
    bus_of,
    drain_quiet,
    expect_close,
    last_seq,
    node_status,
    read_until_cursor,
    ready,
    recv_json,
    small_buffer_socket,
    stream_delta,
    ws_connect,
    ws_url,
)

BOUND = 64 * 1024  # small, so a test fills it quickly
DEFAULT_BOUND = Settings.model_fields["WS_SEND_QUEUE_BYTES"].default


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, fake_llm: FakeLLMServer,
                       ) -> dict[str, Any]:
    return engine_settings(fake_llm, **getattr(request, "param", {}))


def connections(server: LiveServer) -> ConnectionManager:
    manager: ConnectionManager = server.app.state.registry.get(ConnectionManager)
    return manager


def only_tunnel(server: LiveServer, user_id: int) -> Tunnel:
    [tunnel] = connections(server).tunnels_of(user_id)
    return tunnel


async def read_until_cursor_of(inc: Incarnation, target: int, within: float = 60) -> None:
    """Wait until a background reader filling `inc` got `target`."""
    for _ in range(int(within / 0.02)):
        if inc.events and inc.cursors[-1] >= target:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"stalled at {inc.cursors[-1:] or 'nothing'}, want {target}")


async def stalled_client(server: LiveServer, token: str) -> ClientConnection:
    """A client that stops reading: a 4 KB receive window and one buffered frame."""
    return await connect(ws_url(server, token), sock=small_buffer_socket(server.port),
                         max_queue=1, compression=None, max_size=None, ping_interval=None,
                         close_timeout=2)


def text_size(event: Event) -> int:
    return len(encode(event.to_message()).encode("utf-8"))


@dataclass
class Flood:
    pad: int  # characters of padding per event
    batch: int  # events per emit: one batch is offered at once, so it stays under the bound
    cap: int  # events after which the test gives up


FLOODS = {
    "few_large": Flood(pad=20_000, batch=2, cap=2_000),  # ~20 KB each, like big outputs
    "many_small": Flood(pad=100, batch=100, cap=100_000),  # ~210 bytes each
}


async def flood_until_dropped(server: LiveServer, user_id: int, remaining: int, flood: Flood,
                              make: Callable[[int], Event]) -> list[Event]:
    """Emit persisted events until the server drops one of the user's tunnels (until
    `remaining` are left)."""
    bus = bus_of(server.app)
    emitted: list[Event] = []
    while connections(server).count(user_id) > remaining:
        assert len(emitted) < flood.cap, f"the tunnel is still open after {len(emitted)} events"
        batch = [make(len(emitted) + i) for i in range(flood.batch)]
        await bus.emit_many(batch)
        emitted += batch
    return emitted


@pytest.mark.parametrize("settings_overrides", [{"WS_SEND_QUEUE_BYTES": BOUND}],
                         indirect=True)
@pytest.mark.parametrize("shape", list(FLOODS))
async def test_a_stopped_reader_is_closed_with_4409_then_resumes_exactly(
        live_server: LiveServer, live_client: httpx.AsyncClient, shape: str) -> None:
    flood = FLOODS[shape]
    account = await sign_up_and_login(live_client)
    slow = await stalled_client(live_server, account.access_token)
    seen = Incarnation(ready=await ready(slow))
    start = seen.ready["data"]["cursor"]
    [tunnel] = connections(live_server).tunnels_of(account.id)
    # The same user's other tab reads promptly: the same events, and it is never closed.
    twin = await ws_connect(live_server, account.access_token, max_size=None)
    twin_seen = Incarnation(ready=await ready(twin))

    async def read_twin() -> None:
        while True:
            message = await recv_json(twin, within=60)
            (twin_seen.events if "cursor" in message else twin_seen.other).append(message)

    twin_reader = asyncio.create_task(read_twin())
    emitted = await flood_until_dropped(
        live_server, account.id, 1, flood,
        lambda i: node_status(account.id, shape, i, pad="p" * flood.pad))
    sizes = {text_size(e) for e in emitted}
    # The bytes bound closed it: the queue never held more than the bound, and it was full
    # (one more event would have passed it).
    assert tunnel.peak_queued_bytes <= BOUND
    assert tunnel.peak_queued_bytes + max(sizes) > BOUND, (tunnel.peak_queued_bytes, sizes)
    if shape == "many_small":
        # Hundreds of messages filled it, far fewer than a bound in messages would allow.
        assert BOUND // max(sizes) >= 250

    # The client reads again: what was in flight, in order, then the 4409.
    code, received = await expect_close(slow, within=60)
    assert code == 4409, (code, len(received))
    for message in received:
        (seen.events if "cursor" in message else seen.other).append(message)
    assert seen.cursors == list(range(start + 1, start + 1 + len(seen.events)))
    last = seen.cursors[-1] if seen.events else start
    total = await last_seq(live_server.app, account.id)
    assert total == start + len(emitted) and last < total  # it really fell behind
    # The tab that kept reading got everything, in order, and is still open.
    await read_until_cursor_of(twin_seen, total)
    twin_reader.cancel()
    assert twin_seen.cursors == list(range(start + 1, total + 1))
    assert connections(live_server).count(account.id) == 1
    await twin.close()

    # Resumed with its last cursor: exactly the rest, once, in order.
    async with await ws_connect(live_server, account.access_token, after=last,
                                max_size=None) as resumed:
        again = Incarnation(ready=await ready(resumed))
        await read_until_cursor(resumed, again, total, within=60)
        await drain_quiet(resumed, again)
    assert again.cursors == list(range(last + 1, total + 1))
    log = [e for e in await list_events(live_client, account) if e["user_seq"] > start]
    delivered = seen.events + again.events
    assert [m["cursor"] for m in delivered] == [e["user_seq"] for e in log]
    assert [(m["type"], m["data"]) for m in delivered] == [(e["type"], e["payload"])
                                                           for e in log]
    assert [m["data"]["i"] for m in delivered] == list(range(len(emitted)))


# --- the default bound and a 5,000-node run ---------------------------------------------------
def burst_graph(width: int) -> tuple[dict[str, Any], str]:
    """root → api (waits on the provider) → `width - 2` sinks; ids as long as React Flow's
    uuids, so the events are as large as a builder's."""
    ids = [f"node-{i:04d}-{'0' * 26}" for i in range(width)]
    root, api, sinks = ids[0], ids[1], ids[2:]
    nodes = [{"id": root, "type": "initialPrompt", "data": {"prompt": "go"}},
             {"id": api, "type": "promptEnhancer", "data": {}}]
    nodes += [{"id": n, "type": "textOutput", "data": {}} for n in sinks]
    edges = [{"id": f"e-{api}", "source": root, "target": api}]
    edges += [{"id": f"e-{n}", "source": api, "target": n} for n in sinks]
    return {"nodes": nodes, "edges": edges}, api


async def fill_kernel_buffers(server: LiveServer, account: Account, tunnel: Tunnel) -> None:
    """Stream ephemeral deltas to the stopped reader until `websocket.send` blocks (bytes
    stay queued): from then on nothing drains, so whatever comes next sits in the queue."""
    bus = bus_of(server.app)
    held, unchanged = 0, 0
    for i in range(2_000):  # up to ~64 MB
        if tunnel.queued_bytes:
            # Blocked, not merely slow: the same bytes stay queued for half a second.
            unchanged = unchanged + 1 if tunnel.queued_bytes == held else 0
            held = tunnel.queued_bytes
            if unchanged == 5:
                return
            await asyncio.sleep(0.1)
            continue
        held, unchanged = 0, 0
        await bus.emit(stream_delta(account.id, "f" * 32_000, i))
        await asyncio.sleep(0.01)
    raise AssertionError("the stopped reader's socket never filled up")


@pytest.mark.parametrize("settings_overrides", [{}], indirect=True)
async def test_the_default_bound_holds_a_5000_node_runs_start_burst(
        live_server: LiveServer, live_client: httpx.AsyncClient,
        fake_llm: FakeLLMServer) -> None:
    assert live_server.app.state.registry.get(Settings).WS_SEND_QUEUE_BYTES == DEFAULT_BOUND
    width = 5000
    account = await sign_up_and_login(live_client)
    slow = await stalled_client(live_server, account.access_token)
    start = (await ready(slow))["data"]["cursor"]
    tunnel = only_tunnel(live_server, account.id)
    await fill_kernel_buffers(live_server, account, tunnel)
    before = tunnel.queued_bytes

    # The run's start: execution.started (every node id), 5,000 pending, the root's running
    # and completed, then the api node's running — and there it waits on the provider.
    fake_llm.slow_next(1, seconds=120, path=CHAT_PATH)
    g, api = burst_graph(width)
    run_id = await start_run(live_client, account, provider_id="openai", **g)
    burst = 1 + width + 3
    for _ in range(1200):  # up to a minute
        if await last_seq(live_server.app, account.id) >= start + burst:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the run's start burst was not logged")
    # Dispatch is in order: once this marker is dispatched, so is the whole burst.
    await bus_of(live_server.app).emit(stream_delta(account.id, "marker", 0))
    assert connections(live_server).count(account.id) == 1  # not closed
    held = tunnel.queued_bytes - before

    # Now it reads: everything, in order, no close; then the run is cancelled.
    received: list[str] = []

    async def read_all() -> None:
        while True:
            raw = await asyncio.wait_for(slow.recv(), 60)
            assert isinstance(raw, str)
            received.append(raw)
            message = json.loads(raw)
            if message["type"] == "execution.cancelled":
                return

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.5)
    r = await live_client.post(f"/api/v1/execution/runs/{run_id}/cancel",
                               headers=account.headers)
    assert r.status_code in (200, 202), r.text
    try:
        await reader
    except ConnectionClosed as exc:
        raise AssertionError(f"the tunnel was closed: {exc}") from exc
    await slow.close()

    messages = [json.loads(raw) for raw in received]
    events = [(m, len(raw.encode("utf-8"))) for m, raw in zip(messages, received, strict=True)
              if "cursor" in m]
    log = [e for e in await list_events(live_client, account) if e["user_seq"] > start]
    assert [m["cursor"] for m, _ in events] == [e["user_seq"] for e in log]
    burst_events = [(m, size) for m, size in events if m["cursor"] <= start + burst]
    assert [m["type"] for m, _ in burst_events[:2]] == ["execution.started",
                                                        "execution.node.status"]
    last_of_burst = burst_events[-1][0]["data"]
    assert (last_of_burst["node_id"], last_of_burst["status"]) == (api, "running")
    burst_bytes = sum(size for _, size in burst_events)
    # The whole burst sat in the send queue at once (the socket did not drain), and the
    # default bound held it with room to spare (.env.example: keep it above 2 MiB).
    assert held >= burst_bytes, (held, burst_bytes)
    assert 1_000_000 < burst_bytes < 2 * 1024 * 1024 < DEFAULT_BOUND, burst_bytes


@pytest.mark.parametrize("settings_overrides", [{"WS_SEND_QUEUE_BYTES": BOUND}],
                         indirect=True)
async def test_one_event_larger_than_the_bound_reaches_a_reader_that_keeps_up(
        live_server: LiveServer, live_client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(live_client)
    async with await ws_connect(live_server, account.access_token, max_size=None) as ws:
        seen = Incarnation(ready=await ready(ws))
        # An empty queue takes any one message: a client is not closed only because one
        # event (a long output) is bigger than the bound.
        event = node_status(account.id, "big", 0, pad="b" * (2 * BOUND))
        await bus_of(live_server.app).emit(event)
        assert text_size(event) > BOUND
        await read_until_cursor(ws, seen, event.user_seq or 0)
        assert seen.events[-1]["data"]["pad"] == "b" * (2 * BOUND)
        await ws.send(json.dumps({"type": "ping", "data": {"n": 1}}))
        await drain_quiet(ws, seen)
        assert {"type": "pong", "data": {"n": 1}} in seen.other
        assert connections(live_server).count(account.id) == 1
