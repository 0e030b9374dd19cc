"""What a person does on the page, written once with DESIGN.md §9's test hooks only, and the
REST reads (through the public API, with the same account) that check it against the log."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

PASSWORD = "correct-horse-battery"
_names = itertools.count(1)
TERMINAL_RUN = {"succeeded", "partial", "failed", "cancelled"}
_FLOW_URL = re.compile(r"/flows/([0-9a-f-]{36})(?:/|$)")


@dataclass
class Person:
    username: str
    email: str
    password: str = PASSWORD


def unique_person(prefix: str) -> Person:
    name = f"{prefix}{next(_names)}{int(time.time() * 1000) % 100000}"
    return Person(username=name, email=f"{name}@example.com")


# --- accounts and flows ----------------------------------------------------------------------

def sign_up(page: Page, person: Person) -> None:
    """Sign up on /signup; if the page then asks to log in, log in. Ends on the flows list."""
    page.goto("/signup")
    page.get_by_test_id("signup-email").fill(person.email)
    page.get_by_test_id("signup-username").fill(person.username)
    page.get_by_test_id("signup-password").fill(person.password)
    page.get_by_test_id("signup-submit").click()
    new_flow = page.get_by_test_id("new-flow")
    login = page.get_by_test_id("login-submit")
    expect(new_flow.or_(login)).to_be_visible()
    if login.is_visible():
        log_in(page, person)


def log_in(page: Page, person: Person) -> None:
    if not page.get_by_test_id("login-submit").is_visible():
        page.goto("/login")
    page.get_by_test_id("login-identifier").fill(person.username)
    page.get_by_test_id("login-password").fill(person.password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("new-flow")).to_be_visible()


def create_flow(page: Page, name: str) -> str:
    """From the flows list: a new flow named `name`, opened in the editor; returns its id."""
    name_box = page.get_by_test_id("flow-name")
    if name_box.count() and name_box.first.is_visible():
        name_box.first.fill(name)
    rows_before = set(hook_ids(page, "flow-row-"))
    page.get_by_test_id("new-flow").click()
    page.wait_for_function(
        """(before) => location.pathname.startsWith('/flows/') ||
             [...document.querySelectorAll('[data-testid^="flow-row-"]')]
               .some(e => !before.includes(e.dataset.testid))""",
        arg=sorted(rows_before))
    if not _FLOW_URL.search(page.url):
        new = [t for t in hook_ids(page, "flow-row-") if t not in rows_before]
        # Near the row's edge: its middle holds its buttons (rename, delete).
        page.get_by_test_id(new[0]).click(position={"x": 4, "y": 4})
        page.wait_for_url(_FLOW_URL)
    expect(page.locator(".react-flow__pane")).to_be_visible()
    return flow_id_of(page)


def open_flow(page: Page, flow_id: str) -> None:
    page.goto(f"/flows/{flow_id}")
    expect(page.locator(".react-flow__pane")).to_be_visible()


def flow_id_of(page: Page) -> str:
    match = _FLOW_URL.search(page.url)
    assert match, page.url
    return match.group(1)


def hook_ids(page: Page, prefix: str) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        f'[data-testid^="{prefix}"]', "els => els.map(e => e.dataset.testid)")
    return ids


# --- drawing ---------------------------------------------------------------------------------

def node_ids(page: Page) -> list[str]:
    return [t.removeprefix("rf__node-") for t in hook_ids(page, "rf__node-")]


def edge_ids(page: Page) -> list[str]:
    return [t.removeprefix("rf__edge-") for t in hook_ids(page, "rf__edge-")]


def node(page: Page, node_id: str) -> Locator:
    return page.get_by_test_id(f"rf__node-{node_id}")


def drag_from_palette(page: Page, node_type: str, x: float, y: float) -> str:
    """Drag palette-item-<type> onto the canvas at (x, y) of the pane; the new node's id."""
    before = set(node_ids(page))
    page.get_by_test_id(f"palette-item-{node_type}").drag_to(
        page.locator(".react-flow__pane"), target_position={"x": x, "y": y})
    page.wait_for_function(
        """(n) => document.querySelectorAll('[data-testid^="rf__node-"]').length > n""",
        arg=len(before))
    added = [n for n in node_ids(page) if n not in before]
    assert len(added) == 1, added
    return added[0]


def _centre(locator: Locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def connect(page: Page, source: str, target: str, target_handle: str = "input") -> str:
    """Drag from the source node's output handle to the target's text input; the edge's id."""
    before = set(edge_ids(page))
    out = node(page, source).locator(".react-flow__handle.source").first
    handle = f'.react-flow__handle.target[data-handleid="{target_handle}"]'
    into = node(page, target).locator(handle)
    if into.count() == 0:
        into = node(page, target).locator(".react-flow__handle.target")
    sx, sy = _centre(out)
    tx, ty = _centre(into.first)
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move((sx + tx) / 2, (sy + ty) / 2, steps=5)
    page.mouse.move(tx, ty, steps=10)
    page.mouse.up()
    page.wait_for_function(
        """(n) => document.querySelectorAll('[data-testid^="rf__edge-"]').length > n""",
        arg=len(before))
    added = [e for e in edge_ids(page) if e not in before]
    assert len(added) == 1, added
    return added[0]


def draw_chain(page: Page, name: str,
               chain: list[tuple[str, dict[str, str]]]) -> tuple[str, list[str]]:
    """From the flows list, as a person does it: a new flow named `name`; each (type, config)
    of `chain` dragged from the palette across the pane, left to right; the nodes connected in
    order; each config field (label: value) typed into the node's config panel; saved.
    Returns the flow's id and its node ids in chain order."""
    flow_id = create_flow(page, name)
    pane = page.locator(".react-flow__pane").bounding_box()
    assert pane is not None
    step = pane["width"] / (len(chain) + 1)
    ids = [drag_from_palette(page, node_type, step * (i + 0.6),
                             pane["height"] * (0.3 + 0.15 * (i % 2)))
           for i, (node_type, _) in enumerate(chain)]
    assert sorted(node_ids(page)) == sorted(ids)
    for source, target in itertools.pairwise(ids):
        connect(page, source, target)
    assert len(edge_ids(page)) == len(ids) - 1
    for node_id, (_, config) in zip(ids, chain, strict=True):
        for label, value in config.items():
            set_field(page, node_id, label, value)
    expect(page.get_by_test_id("unsaved")).to_be_visible()
    save(page)
    return flow_id, ids


def save(page: Page) -> None:
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("unsaved")).to_have_count(0)


def viewport_transform(page: Page) -> str:
    transform: str = page.locator(".react-flow__viewport").evaluate("e => e.style.transform")
    return transform


def node_positions(page: Page) -> dict[str, str]:
    positions: dict[str, str] = page.eval_on_selector_all(
        '[data-testid^="rf__node-"]',
        "els => Object.fromEntries(els.map(e => [e.dataset.testid.slice(9), e.style.transform]))")
    return positions


# --- running ---------------------------------------------------------------------------------

_STATES_JS = """() => Object.fromEntries(
    [...document.querySelectorAll('[data-testid^="rf__node-"]')].map(e => {
        const holder = e.hasAttribute('data-status') ? e : e.querySelector('[data-status]');
        return [e.dataset.testid.slice(9), holder ? holder.getAttribute('data-status') : null];
    }))"""


def node_states(page: Page) -> dict[str, str | None]:
    """Every node's data-status as the page shows it (None: no attribute, never run)."""
    states: dict[str, str | None] = page.evaluate(_STATES_JS)
    return states


def node_attribute(page: Page, node_id: str, name: str) -> str | None:
    value: str | None = node(page, node_id).evaluate(
        """(e, name) => { const h = e.hasAttribute(name) ? e : e.querySelector(`[${name}]`);
                          return h ? h.getAttribute(name) : null; }""", name)
    return value


def wait_node_states(page: Page, expected: dict[str, str], timeout_ms: float = 30_000) -> None:
    page.wait_for_function(f"""(expected) => {{
        const states = ({_STATES_JS})();
        return Object.entries(expected).every(([id, s]) => states[id] === s);
    }}""", arg=expected, timeout=timeout_ms)


def run_status(page: Page) -> Locator:
    return page.get_by_test_id("run-status")


def current_run_id(page: Page) -> str | None:
    badge = run_status(page)
    if badge.count() == 0:
        return None
    return badge.get_attribute("data-run-id")


def start_run(page: Page, button: str = "run") -> str:
    """Click `run` (or `rerun-confirm`); the id of the run the badge then shows."""
    before = current_run_id(page)
    page.get_by_test_id(button).click()
    page.wait_for_function(
        """(before) => { const b = document.querySelector('[data-testid="run-status"]');
                         const id = b && b.getAttribute('data-run-id');
                         return id && id !== before; }""", arg=before)
    run_id = current_run_id(page)
    assert run_id
    return run_id


def wait_run_end(page: Page, run_id: str, timeout_ms: float = 60_000) -> str:
    page.wait_for_function(
        """([id, terminal]) => { const b = document.querySelector('[data-testid="run-status"]');
               return b && b.getAttribute('data-run-id') === id &&
                      terminal.includes(b.getAttribute('data-status')); }""",
        arg=[run_id, sorted(TERMINAL_RUN)], timeout=timeout_ms)
    status = run_status(page).get_attribute("data-status")
    assert status
    return status


def page_cursor(page: Page) -> int:
    value = page.locator("[data-cursor]").first.get_attribute("data-cursor")
    assert value is not None and value.isdigit(), value
    return int(value)


# --- the log, through the public API ---------------------------------------------------------

class Api:
    """The same person's view of the API, for reading the log the page must agree with."""

    def __init__(self, base_url: str, person: Person) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.person = person
        self.token = ""
        self.log_in()

    def log_in(self) -> None:
        r = self.http.post("/api/v1/auth/login", json={"identifier": self.person.username,
                                                       "password": self.person.password})
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params, headers={"Authorization": f"Bearer {self.token}"})
        if r.status_code == 401:  # a short access-token lifetime in this server
            self.log_in()
            r = self.http.get(path, params=params,
                              headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.http.post(path, json=body, headers={"Authorization": f"Bearer {self.token}"})
        if r.status_code == 401:
            self.log_in()
            r = self.http.post(path, json=body, headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code in (200, 201, 202), r.text
        return r.json()

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {**filters, "limit": 500, **({"cursor": cursor} if cursor else {})}
            page = self.get("/api/v1/events", **params)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor or not page["items"]:
                return items

    def close(self) -> None:
        self.http.close()


def states_from_log(events: list[dict[str, Any]]) -> dict[str, str]:
    """A run's final node states rebuilt from its events alone (DESIGN.md §5)."""
    states: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e["run_seq"] or 0):
        payload = event["payload"]
        if event["type"].startswith("execution.node.") and "status" in payload:
            states[payload["node_id"]] = payload["status"]
    return states


def run_end(events: list[dict[str, Any]]) -> dict[str, Any]:
    ends = [e for e in events if e["type"] in {"execution.completed", "execution.failed",
                                                "execution.cancelled"}]
    assert len(ends) == 1, [e["type"] for e in events]
    return ends[0]


def seed_flow(api: Api, name: str, graph: dict[str, Any]) -> str:
    """A flow stored through the REST API, for scripts/benchmarks/browser.py only: a 1,000-node
    flow cannot be drawn by mouse. The browser scenarios draw theirs with draw_chain."""
    flow = api.post("/api/v1/flows", {"name": name, "graph_data": graph})
    return str(flow["id"])


def set_field(page: Page, node_id: str, label: str, value: str) -> None:
    """Select the node (its config panel opens) and fill the field labelled `label`."""
    node(page, node_id).click()
    field = page.get_by_label(re.compile(rf"^\s*{re.escape(label)}", re.I))
    field.first.fill(value)


def visible(locator: Locator) -> Locator:
    """The first visible element (a hook may be both in a context menu and in a panel)."""
    return locator.filter(visible=True).first


def output_text(event: dict[str, Any]) -> str:
    text: str = event["payload"]["output"]["text"]
    return text
