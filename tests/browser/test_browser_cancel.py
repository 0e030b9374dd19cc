"""Cancel a slow run from the page. The echo provider answers at once, so this server's nodes
talk to the fake OpenAI server on loopback (tests/fake_llm_server.py), told to hold one answer
back: the run is still running when the person clicks `cancel`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.browser.builder import (
    Api,
    draw_chain,
    node_states,
    run_end,
    sign_up,
    start_run,
    states_from_log,
    unique_person,
    wait_node_states,
    wait_run_end,
)
from tests.browser.server import PageServer
from tests.fake_llm_server import FakeLLMServer


@pytest.fixture(scope="module")
def server_settings(fake_llm_server: FakeLLMServer) -> dict[str, str]:
    return {"DEFAULT_PROVIDER": "openai", "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": fake_llm_server.openai_base_url}


@pytest.fixture
def api(page: Page, server: PageServer) -> Iterator[Api]:
    person = unique_person("canceller")
    sign_up(page, person)
    api = Api(server.url, person)
    yield api
    api.close()


def test_cancel_a_slow_run(page: Page, api: Api, fake_llm: FakeLLMServer) -> None:
    _, ids = draw_chain(page, "Slow", [("initialPrompt", {"prompt": "take your time"}),
                                       ("promptEnhancer", {}), ("textOutput", {})])
    fake_llm.slow_next(1, seconds=60)
    run_id = start_run(page)
    wait_node_states(page, {ids[0]: "completed", ids[1]: "running"})
    page.get_by_test_id("cancel").click()
    assert wait_run_end(page, run_id) == "cancelled"
    events = api.events(run_id=run_id)
    assert run_end(events)["type"] == "execution.cancelled"
    from_log = states_from_log(events)
    assert from_log == {ids[0]: "completed", ids[1]: "cancelled", ids[2]: "cancelled"}
    wait_node_states(page, from_log)
    assert node_states(page) == from_log
    assert len(fake_llm.requests) == 1  # the held answer was the only call
