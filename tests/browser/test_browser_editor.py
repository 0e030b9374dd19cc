"""Issue 12 through the page in Chromium (DESIGN.md §9 hooks only): sign up, draw a 4-node flow
from the palette by mouse, save, reload, run, re-run from the second node, history, event log,
and a flow whose output is HTML. Every flow is drawn by mouse; REST only reads, to compare
what the page shows with the event log."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

import pytest
from playwright.sync_api import Page, expect

from tests.browser.builder import (
    Api,
    Person,
    draw_chain,
    edge_ids,
    node,
    node_attribute,
    node_ids,
    node_positions,
    node_states,
    output_text,
    page_cursor,
    sign_up,
    start_run,
    states_from_log,
    unique_person,
    viewport_transform,
    visible,
    wait_node_states,
    wait_run_end,
)
from tests.browser.server import PageServer

PROMPT = "A lighthouse keeper finds a letter"


@pytest.fixture
def person(page: Page) -> Person:
    person = unique_person("drawer")
    sign_up(page, person)
    return person


@pytest.fixture
def api(server: PageServer, person: Person) -> Iterator[Api]:
    api = Api(server.url, person)
    yield api
    api.close()


def to_fixed(x: float, places: int) -> str:
    """JavaScript's Number.prototype.toFixed: the exact value rounded half up."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def format_ms(ms: int) -> str:
    """A duration as web/src/editor/status.tsx formatMs writes it."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{to_fixed(ms / 1000, 1)} s"
    return f"{ms // 60_000} min {math.floor((ms % 60_000) / 1000 + 0.5)} s"


def assert_page_matches_log(page: Page, api: Api, run_id: str) -> list[dict]:
    events = api.events(run_id=run_id)
    from_log = states_from_log(events)
    shown = node_states(page)
    assert {n: shown.get(n) for n in from_log} == from_log
    for event in events:
        if event["type"] == "execution.node.completed":
            node_id = event["payload"]["node_id"]
            expect(page.get_by_test_id(f"node-output-{node_id}")).to_have_text(
                output_text(event))
            assert node_attribute(page, node_id, "data-duration-ms") == str(
                event["payload"]["duration_ms"])
    # The page applied every event of this user up to the log's last one.
    last = max(e["user_seq"] for e in api.events())
    page.wait_for_function(
        "(last) => Number(document.querySelector('[data-cursor]').dataset.cursor) >= last",
        arg=last)
    assert page_cursor(page) == last
    return events


def test_draw_save_reload_run_and_rerun_from_the_second_node(page: Page, api: Api) -> None:
    types = ["initialPrompt", "promptEnhancer", "translator", "textOutput"]
    flow_id, ids = draw_chain(page, "Drawn by mouse",
                              [(t, {"prompt": PROMPT} if i == 0 else {})
                               for i, t in enumerate(types)])
    assert sorted(node_ids(page)) == sorted(ids)
    assert len(edge_ids(page)) == 3

    # Stored as toObject(): the same nodes, edges and viewport the page shows.
    stored = api.get(f"/api/v1/flows/{flow_id}")["graph_data"]
    assert sorted(n["id"] for n in stored["nodes"]) == sorted(ids)
    assert sorted((e["source"], e["target"]) for e in stored["edges"]) == sorted(
        pairwise(ids))
    assert [n["type"] for n in sorted(stored["nodes"], key=lambda n: ids.index(n["id"]))] == types
    assert set(stored["viewport"]) == {"x", "y", "zoom"}
    assert [n["data"].get("prompt") for n in stored["nodes"] if n["id"] == ids[0]] == [PROMPT]
    positions, viewport, edges = node_positions(page), viewport_transform(page), edge_ids(page)

    page.reload()
    for node_id in ids:
        expect(node(page, node_id)).to_be_visible()
    assert node_positions(page) == positions
    assert viewport_transform(page) == viewport
    assert sorted(edge_ids(page)) == sorted(edges)
    expect(page.get_by_test_id("unsaved")).to_have_count(0)
    assert set(node_states(page).values()) == {None}  # no status before any run

    first = start_run(page)
    assert wait_run_end(page, first) == "succeeded"
    wait_node_states(page, dict.fromkeys(ids, "completed"))
    events = assert_page_matches_log(page, api, first)
    assert [output_text(e) for e in events if e["type"] == "execution.node.completed"
            and e["payload"]["node_id"] == ids[3]] == [PROMPT]

    # Re-run from the second node: the preview names what will run and what is cached.
    node(page, ids[1]).click(button="right")
    visible(page.get_by_test_id("rerun-from-node")).click()
    expected = {ids[0]: "cached", ids[1]: "will-run", ids[2]: "will-run", ids[3]: "will-run"}
    page.wait_for_function("""(expected) => Object.entries(expected).every(([id, v]) => {
        const e = document.querySelector(`[data-testid="rf__node-${id}"]`);
        const h = e && (e.hasAttribute('data-rerun') ? e : e.querySelector('[data-rerun]'));
        return h && h.getAttribute('data-rerun') === v; })""", arg=expected)
    assert {n: node_attribute(page, n, "data-rerun") for n in ids} == expected
    second = start_run(page, "rerun-confirm")
    assert second != first
    assert wait_run_end(page, second) == "succeeded"
    wait_node_states(page, {ids[0]: "cached", ids[1]: "completed", ids[2]: "completed",
                            ids[3]: "completed"})
    events = assert_page_matches_log(page, api, second)
    started = [e for e in events if e["type"] == "execution.started"]
    assert started[0]["payload"]["trigger_node_id"] == ids[1]
    ran = {e["payload"]["node_id"] for e in events
           if e["type"] == "execution.node.status" and e["payload"]["status"] == "running"}
    assert ran == set(ids[1:])


def test_history_paints_a_past_run_and_the_event_log_shows_the_log(page: Page, api: Api) -> None:
    flow_id, ids = draw_chain(page, "History", [("initialPrompt", {"prompt": "first words"}),
                                                ("grammarFix", {}), ("textOutput", {})])
    first = start_run(page)
    assert wait_run_end(page, first) == "succeeded"
    second = start_run(page)
    assert wait_run_end(page, second) == "succeeded"

    if not page.get_by_test_id("run-history").is_visible():
        # §9 names the panel, not what opens it: a person presses the "History" button.
        page.get_by_role("button", name="History", exact=True).click()
    history = page.get_by_test_id("run-history")
    expect(history).to_be_visible()
    expect(page.get_by_test_id(f"run-row-{first}")).to_be_visible()
    expect(page.get_by_test_id(f"run-row-{second}")).to_be_visible()
    # Issue 12 item 9: each row shows the run's status, start, duration, tokens and cost, as
    # the run resource has them.
    expect(history.locator("thead th")).to_have_text(
        ["Status", "Started", "Duration", "Tokens", "Cost"])
    for run_id in (first, second):
        run = api.get(f"/api/v1/execution/runs/{run_id}")
        cells = page.get_by_test_id(f"run-row-{run_id}").locator("td")
        expect(cells).to_have_count(5)
        expect(cells.nth(0)).to_contain_text("succeeded")
        assert cells.nth(1).inner_text().strip() not in {"", "—"}
        assert run["duration_ms"] is not None
        expect(cells.nth(2)).to_have_text(format_ms(run["duration_ms"]))
        expect(cells.nth(3)).to_have_text(str(run["tokens"]["input"] + run["tokens"]["output"]))
        expect(cells.nth(4)).to_have_text(f"${to_fixed(run['cost_usd'], 4)}")

    page.get_by_test_id(f"run-row-{first}").click()
    page.wait_for_url(f"**/flows/{flow_id}/runs/{first}")
    from_log = states_from_log(api.events(run_id=first))
    wait_node_states(page, from_log)
    assert node_states(page) == from_log == dict.fromkeys(ids, "completed")

    page.goto("/events")
    expect(page.get_by_test_id("event-log")).to_be_visible()
    log = {e["user_seq"]: e for e in api.events()}
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid^=\"event-row-\"]').length > 0")
    rows = page.eval_on_selector_all(
        '[data-testid^="event-row-"]',
        "els => els.map(e => [e.dataset.testid.slice(10), e.innerText])")
    assert rows
    for cursor, text in rows:
        event = log[int(cursor)]  # every row is an event of the log, under its own cursor
        assert event["type"] in text, (cursor, text, event["type"])
    shown = {int(cursor) for cursor, _ in rows}
    assert max(log) in shown or min(log) in shown  # a page of the log starts at one end


def test_html_in_an_output_is_shown_as_text(page: Page, api: Api) -> None:
    payload = "<img src=x onerror=alert(1)>"
    _, ids = draw_chain(page, "XSS", [("initialPrompt", {"prompt": payload}),
                                      ("textOutput", {})])
    run_id = start_run(page)
    assert wait_run_end(page, run_id) == "succeeded"
    expect(page.get_by_test_id(f"node-output-{ids[1]}")).to_have_text(payload)
    expect(page.get_by_test_id(f"node-output-{ids[0]}")).to_have_text(payload)
    assert page.locator("img").count() == 0
    page.goto("/events")
    expect(page.get_by_test_id("event-log")).to_be_visible()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid^=\"event-row-\"]').length > 0")
    assert page.locator("img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]
