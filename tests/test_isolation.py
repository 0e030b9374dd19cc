"""Tenant isolation (DESIGN.md §2, §3): user B walks every endpoint that takes an id, against
user A's resources, and gets the same 404 as for an id that does not exist. The walk is
built from the app's own route table, so a new endpoint with an id is covered or the test
fails."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from tests.helpers import Account, assert_error, sign_up_and_login

API = "/api/v1"
PARAM = re.compile(r"{([^}]+)}")
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}

# Paths whose parameter is not a user-owned resource: the shared node catalog. Walked too
# (B must still get the documented 404 for an unknown type), but there is no "A's" entry.
SHARED = {f"{API}/components/{{component_type}}"}


@dataclass
class World:
    a: Account
    b: Account
    ids: dict[str, Any]  # A's resources by path parameter name
    missing: dict[str, Any]  # ids that exist for nobody
    snapshot: dict[str, Any]


def templated_operations(app: FastAPI) -> set[tuple[str, str]]:
    """Every (METHOD, path) in the app with a `{…}` parameter (the WebSocket route is not
    an HTTP operation and is not in the schema)."""
    ops: set[tuple[str, str]] = set()
    for path, item in app.openapi()["paths"].items():
        if PARAM.search(path):
            ops.update((method.upper(), path) for method in item if method in HTTP_METHODS)
    return ops


def has_execution(app: FastAPI) -> bool:
    return any(path.startswith(f"{API}/execution") for path in app.openapi()["paths"])


# A valid body per operation, so that B's request can only fail on ownership (never 422).
def body_for(method: str, path: str) -> dict[str, Any] | None:
    if method in ("GET", "DELETE"):
        return None
    if path.startswith(f"{API}/flows/"):
        return {"name": "stolen", "graph_data": {"nodes": [], "edges": []}}
    if path.startswith(f"{API}/characters/"):
        return {"name": "stolen", "persona": {"x": 1}}
    if path.endswith("/cancel"):
        return None
    return {}


async def create_run(client: httpx.AsyncClient, a: Account, flow_id: str) -> str:
    r = await client.post(f"{API}/execution/run", json={"flow_id": flow_id},
                          headers=a.headers)
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


async def build_world(client: httpx.AsyncClient, app: FastAPI) -> World:
    a = await sign_up_and_login(client)
    b = await sign_up_and_login(client)
    r = await client.post(f"{API}/projects", json={"name": "A's project"}, headers=a.headers)
    assert r.status_code == 201, r.text
    project = r.json()
    graph: dict[str, Any] = {"nodes": [], "edges": [], "viewport": {"x": 0, "y": 0, "zoom": 1}}
    if has_execution(app):
        graph = {"nodes": [{"id": "out", "type": "textOutput", "data": {},
                            "position": {"x": 0, "y": 0}}], "edges": []}
    r = await client.post(f"{API}/flows", json={"name": "A's flow", "graph_data": graph,
                                                "project_id": project["id"]},
                          headers=a.headers)
    assert r.status_code == 201, r.text
    flow = r.json()
    r = await client.post(f"{API}/characters", json={"name": "A's character",
                                                     "persona": {"traits": ["brave"]},
                                                     "project_id": project["id"]},
                          headers=a.headers)
    assert r.status_code == 201, r.text
    character = r.json()
    ids: dict[str, Any] = {"project_id": project["id"], "flow_id": flow["id"],
                           "character_id": character["id"], "user_id": a.id}
    snapshot = {"project": project, "flow": flow, "character": character}
    if has_execution(app):
        ids["run_id"] = await create_run(client, a, flow["id"])
    missing: dict[str, Any] = {"project_id": 987654, "user_id": 987654,
                               "flow_id": str(uuid.uuid4()), "character_id": str(uuid.uuid4()),
                               "run_id": str(uuid.uuid4()),
                               "component_type": "noSuchComponentType"}
    return World(a=a, b=b, ids=ids, missing=missing, snapshot=snapshot)


async def call(client: httpx.AsyncClient, method: str, path: str, values: dict[str, Any],
               account: Account, body: dict[str, Any] | None) -> httpx.Response:
    url = PARAM.sub(lambda m: str(values[m.group(1)]), path)
    headers = {**account.headers, "X-Request-ID": "isolation-probe"}
    return await client.request(method, url, json=body, headers=headers)


async def test_b_gets_404_for_every_id_of_a(client: httpx.AsyncClient, app: FastAPI) -> None:
    world = await build_world(client, app)
    operations = templated_operations(app)
    walked: set[tuple[str, str]] = set()
    # DELETEs last, so a wrongly allowed delete cannot hide a wrongly allowed read.
    for method, path in sorted(operations, key=lambda op: (op[0] == "DELETE", op[1], op[0])):
        names = PARAM.findall(path)
        for name in names:
            assert name in world.missing, f"{method} {path}: no test id for {{{name}}}"
        body = body_for(method, path)
        missing = await call(client, method, path, world.missing, world.b, body)
        assert_error(missing, 404)
        if path in SHARED:
            walked.add((method, path))
            continue
        for name in names:
            assert name in world.ids, f"{method} {path}: A has no resource for {{{name}}}"
        foreign = await call(client, method, path, world.ids, world.b, body)
        assert_error(foreign, 404)
        # No existence leak: the same bytes for "A's" and "nobody's" (same request id sent).
        assert foreign.content == missing.content, (method, path)
        assert dict(foreign.headers) == dict(missing.headers), (method, path)
        walked.add((method, path))

    assert walked == operations
    expected = {
        ("GET", f"{API}/users/{{user_id}}"), ("DELETE", f"{API}/users/{{user_id}}"),
        ("GET", f"{API}/projects/{{project_id}}"), ("DELETE", f"{API}/projects/{{project_id}}"),
        ("GET", f"{API}/flows/{{flow_id}}"), ("PUT", f"{API}/flows/{{flow_id}}"),
        ("PATCH", f"{API}/flows/{{flow_id}}"), ("DELETE", f"{API}/flows/{{flow_id}}"),
        ("GET", f"{API}/characters/{{character_id}}"),
        ("PUT", f"{API}/characters/{{character_id}}"),
        ("PATCH", f"{API}/characters/{{character_id}}"),
        ("DELETE", f"{API}/characters/{{character_id}}"),
    }
    assert expected <= walked, expected - walked
    if has_execution(app):
        expected |= {("GET", f"{API}/execution/runs/{{run_id}}"),
                     ("POST", f"{API}/execution/runs/{{run_id}}/cancel")}
        assert expected <= walked, expected - walked

    # An id in a body leaks nothing either: another user's projects by user_id.
    probe = {**world.b.headers, "X-Request-ID": "select-probe"}
    foreign = await client.post(f"{API}/projects/select", json={"user_id": world.a.id},
                                headers=probe)
    missing = await client.post(f"{API}/projects/select", json={"user_id": 987654},
                                headers=probe)
    assert_error(foreign, 404)
    assert foreign.content == missing.content

    await assert_a_untouched(client, world)


async def assert_a_untouched(client: httpx.AsyncClient, world: World) -> None:
    a = world.a
    for kind, plural in (("project", "projects"), ("flow", "flows"),
                         ("character", "characters")):
        before = world.snapshot[kind]
        r = await client.get(f"{API}/{plural}/{before['id']}", headers=a.headers)
        assert r.status_code == 200, (kind, r.text)
        assert r.json() == before, kind
    r = await client.get(f"{API}/users/me", headers=a.headers)
    assert r.status_code == 200 and r.json()["id"] == a.id
    if "run_id" in world.ids:
        r = await client.get(f"{API}/execution/runs/{world.ids['run_id']}", headers=a.headers)
        assert r.status_code == 200, r.text
    # B's token still works too (B deleted nobody, including themself).
    assert (await client.get(f"{API}/users/me", headers=world.b.headers)).status_code == 200


async def test_lists_never_show_another_users_items(client: httpx.AsyncClient,
                                                   app: FastAPI) -> None:
    world = await build_world(client, app)
    b = world.b
    # B owns things too, so an empty list is not the only passing answer.
    r = await client.post(f"{API}/projects", json={"name": "B's project"}, headers=b.headers)
    b_project = r.json()["id"]
    r = await client.post(f"{API}/flows", json={"name": "B's flow", "project_id": b_project},
                          headers=b.headers)
    b_flow = r.json()["id"]
    r = await client.post(f"{API}/characters", json={"name": "B's character"},
                          headers=b.headers)
    b_character = r.json()["id"]

    async def ids(url: str) -> list[Any]:
        r = await client.get(url, headers=b.headers)
        assert r.status_code == 200, (url, r.text)
        return [item["id"] for item in r.json()]

    assert await ids(f"{API}/projects") == [b_project]
    assert await ids(f"{API}/flows") == [b_flow]
    assert await ids(f"{API}/characters") == [b_character]
    a_project = world.ids["project_id"]
    assert await ids(f"{API}/flows?project_id={a_project}") == []
    assert await ids(f"{API}/characters?project_id={a_project}") == []
    assert await ids(f"{API}/flows?project_id={b_project}") == [b_flow]

    # The event log: B sees only B's events, also when filtering by A's flow or run.
    r = await client.get(f"{API}/events", headers=b.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and {e["user_id"] for e in items} == {b.id}
    r = await client.get(f"{API}/events", params={"flow_id": world.ids["flow_id"]},
                         headers=b.headers)
    assert r.status_code == 200 and r.json()["items"] == []
    assert_error(await client.get(f"{API}/events", params={"user_id": world.a.id},
                                  headers=b.headers), 403)
    if "run_id" in world.ids:
        r = await client.get(f"{API}/events", params={"run_id": world.ids["run_id"]},
                             headers=b.headers)
        assert r.status_code == 200 and r.json()["items"] == []
        r = await client.get(f"{API}/execution/runs", headers=b.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        runs = body["items"] if isinstance(body, dict) else body
        assert runs == []
    # A's lists still show A's things.
    r = await client.get(f"{API}/flows", headers=world.a.headers)
    assert [f["id"] for f in r.json()] == [world.ids["flow_id"]]


async def test_b_cannot_create_or_move_into_a_project_of_a(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    world = await build_world(client, app)
    b = world.b
    probe = {**b.headers, "X-Request-ID": "project-probe"}
    for kind in ("flows", "characters"):
        foreign = await client.post(f"{API}/{kind}",
                                    json={"name": "x", "project_id": world.ids["project_id"]},
                                    headers=probe)
        missing = await client.post(f"{API}/{kind}", json={"name": "x", "project_id": 987654},
                                    headers=probe)
        assert_error(foreign, 404)
        assert foreign.content == missing.content, kind
        r = await client.get(f"{API}/{kind}", headers=b.headers)
        assert r.json() == [], kind
        # Nor move one of B's own items into A's project.
        r = await client.post(f"{API}/{kind}", json={"name": "mine"}, headers=b.headers)
        assert r.status_code == 201
        own = r.json()
        for method in ("PATCH", "PUT"):
            r = await client.request(method, f"{API}/{kind}/{own['id']}",
                                     json={"project_id": world.ids["project_id"]},
                                     headers=b.headers)
            assert_error(r, 404)
        r = await client.get(f"{API}/{kind}/{own['id']}", headers=b.headers)
        assert r.json()["project_id"] is None, kind
    # A's project holds nothing of B's.
    for kind in ("flows", "characters"):
        r = await client.get(f"{API}/{kind}", params={"project_id": world.ids["project_id"]},
                             headers=world.a.headers)
        assert all(item["user_id"] == world.a.id for item in r.json()), kind
