"""The access token expires in the middle of a run: the tunnel closes with 4001, the page
refreshes its token and reconnects with after=<cursor>, and no event is missed — its node
states and cursor equal the log's afterwards (issue 12, item 11)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.browser.builder import (
    Api,
    draw_chain,
    node_states,
    output_text,
    page_cursor,
    sign_up,
    start_run,
    states_from_log,
    unique_person,
    wait_node_states,
    wait_run_end,
)
from tests.browser.server import PageServer
from tests.fake_llm_server import FakeLLMServer, reply_for

TOKEN_SECONDS = 6


@pytest.fixture(scope="module")
def server_settings(fake_llm_server: FakeLLMServer) -> dict[str, str]:
    return {"ACCESS_TOKEN_MINUTES": str(TOKEN_SECONDS / 60), "DEFAULT_PROVIDER": "openai",
            "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": fake_llm_server.openai_base_url}


@pytest.fixture
def api(page: Page, server: PageServer) -> Iterator[Api]:
    person = unique_person("reconnect")
    sign_up(page, person)
    api = Api(server.url, person)
    yield api
    api.close()


def test_token_expiry_mid_run_loses_no_event(page: Page, api: Api,
                                             fake_llm: FakeLLMServer) -> None:
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    _, ids = draw_chain(page, "Expiring", [("initialPrompt", {"prompt": "keep going"}),
                                           ("promptEnhancer", {}), ("grammarFix", {}),
                                           ("textOutput", {})])
    # The second node's answer comes after every token issued so far has expired.
    fake_llm.slow_next(1, seconds=TOKEN_SECONDS * 1.5)
    opened_before_run = len(sockets)
    run_id = start_run(page)
    assert wait_run_end(page, run_id, timeout_ms=60_000) == "succeeded"
    events = api.events(run_id=run_id)
    from_log = states_from_log(events)
    assert from_log == dict.fromkeys(ids, "completed")
    wait_node_states(page, from_log)
    assert node_states(page) == from_log
    final = [output_text(e) for e in events if e["type"] == "execution.node.completed"
             and e["payload"]["node_id"] == ids[3]]
    assert final == [reply_for(reply_for("keep going"))]
    expect(page.get_by_test_id(f"node-output-{ids[3]}")).to_have_text(final[0])
    last = max(e["user_seq"] for e in api.events())
    page.wait_for_function(
        "(last) => Number(document.querySelector('[data-cursor]').dataset.cursor) >= last",
        arg=last)
    assert page_cursor(page) == last
    # The page did reconnect, and it resumed from a cursor rather than starting over.
    tunnels = [s.url for s in sockets if "/api/v1/ws" in s.url]
    assert len(tunnels) >= 2, tunnels
    assert all("after=" in url for url in tunnels[1:]), tunnels
    # Drawing may outlast a token too; the run itself still saw one expire and a reconnect.
    assert any("/api/v1/ws" in s.url for s in sockets[opened_before_run:]), tunnels
    expect(page.locator("[data-tunnel]").first).to_have_attribute("data-tunnel", "open")
