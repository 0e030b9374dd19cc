"""Owned resources through the REST API (DESIGN.md §2, §3): flows (graph_data stored exactly
as React Flow exports it), characters, projects, the component catalog, and deleting an
account."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from app.core.di.discovery import Discovered
from tests.helpers import Account, assert_error, sign_up_and_login

API = "/api/v1"


def react_flow_export() -> dict[str, Any]:
    """What `reactFlowInstance.toObject()` gives for a small flow in a real builder, plus
    keys a builder adds on its own."""
    return {
        "nodes": [
            {
                "id": "initialPrompt-1",
                "type": "initialPrompt",
                "position": {"x": 120.5, "y": -42.25},
                "positionAbsolute": {"x": 120.5, "y": -42.25},
                "data": {
                    "label": "Idée de départ ✨",
                    "prompt": "Un dragon qui apprend le piano 🎹 — «histoire courte»",
                    "temperature": 0.7,
                    "tags": [["a", 1], ["b", 2.5, None], []],
                    "nested": {"deep": {"deeper": [{"k": True}, {"k": False}]}},
                },
                "measured": {"width": 288, "height": 164},
                "width": 288,
                "height": 164,
                "selected": True,
                "dragging": False,
                "draggable": True,
                "style": {"border": "1px solid #e2e8f0", "borderRadius": 8, "opacity": 0.95},
                "className": "node-initial",
                "zIndex": 0,
            },
            {
                "id": "storyTeller-2",
                "type": "storyTeller",
                "position": {"x": 520, "y": 10.125},
                "data": {"label": "故事", "model": None, "max_attempts": 2,
                         "timeout_s": 12.5},
                "measured": {"width": 300, "height": 200},
                "selected": False,
                "dragging": False,
                "sourcePosition": "right",
                "targetPosition": "left",
            },
            {
                "id": "textOutput-3",
                "type": "textOutput",
                "position": {"x": 900, "y": 0},
                "data": {},
                "hidden": False,
                "parentId": None,
            },
        ],
        "edges": [
            {
                "id": "xy-edge__initialPrompt-1output-storyTeller-2input",
                "source": "initialPrompt-1",
                "target": "storyTeller-2",
                "sourceHandle": "output",
                "targetHandle": "input",
                "animated": True,
                "type": "smoothstep",
                "markerEnd": {"type": "arrowclosed", "width": 20, "height": 20,
                              "color": "#6366f1"},
                "style": {"strokeWidth": 2},
                "selected": False,
            },
            {
                "id": "e2-3",
                "source": "storyTeller-2",
                "target": "textOutput-3",
                "sourceHandle": None,
                "targetHandle": None,
                "animated": False,
                "label": "→ sortie",
                "data": {"kind": "text"},
            },
        ],
        "viewport": {"x": -12.75, "y": 33.3333333333, "zoom": 0.8125},
        "builderVersion": "2.4.1",
        "meta": {"author": "Zoë", "floats": [0.1, 1e-7, 123456789.125, -0.0],
                 "big": 2**53, "empty": {}, "list": []},
    }


async def create_flow(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    r = await client.post(f"{API}/flows", json={"name": "Flow", **body}, headers=account.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_graph_data_round_trips_unchanged(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    graph = react_flow_export()
    sent = copy.deepcopy(graph)
    flow = await create_flow(client, account, graph_data=graph, provider_id="echo")
    assert flow["graph_data"] == sent
    r = await client.get(f"{API}/flows/{flow['id']}", headers=account.headers)
    assert r.status_code == 200
    assert r.json()["graph_data"] == sent
    # List shows the same document.
    r = await client.get(f"{API}/flows", headers=account.headers)
    assert [f["graph_data"] for f in r.json()] == [sent]
    # After an update the new document is stored as sent, too.
    changed = copy.deepcopy(sent)
    changed["nodes"][0]["position"] = {"x": 1.5, "y": 2.25}
    changed["nodes"].append({"id": "n4", "type": "translator", "data": {"target": "日本語"},
                             "position": {"x": 0, "y": 0}, "measured": {"width": 1}})
    changed["viewport"]["zoom"] = 1.75
    r = await client.patch(f"{API}/flows/{flow['id']}", json={"graph_data": changed},
                           headers=account.headers)
    assert r.status_code == 200, r.text
    r = await client.get(f"{API}/flows/{flow['id']}", headers=account.headers)
    assert r.json()["graph_data"] == changed
    assert r.json()["name"] == "Flow"


async def test_flow_crud(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    r = await client.post(f"{API}/flows", json={"name": "Minimal"}, headers=account.headers)
    assert r.status_code == 201, r.text
    flow = r.json()
    assert set(flow) >= {"id", "name", "description", "graph_data", "provider_id",
                         "project_id", "user_id", "created_at", "updated_at"}
    assert flow["graph_data"] == {"nodes": [], "edges": []}
    assert flow["user_id"] == account.id
    assert flow["provider_id"] is None and flow["project_id"] is None
    uuid.UUID(flow["id"])
    url = f"{API}/flows/{flow['id']}"

    # PATCH changes only what it names.
    r = await client.patch(url, json={"description": "about", "provider_id": "claude"},
                           headers=account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Minimal"
    assert r.json()["description"] == "about"
    assert r.json()["provider_id"] == "claude"
    # PUT with the full document.
    r = await client.put(url, json={"name": "Renamed", "description": "",
                                    "graph_data": {"nodes": [], "edges": [], "x": 1},
                                    "provider_id": None}, headers=account.headers)
    assert r.status_code == 200, r.text
    got = (await client.get(url, headers=account.headers)).json()
    assert got["name"] == "Renamed"
    assert got["provider_id"] is None
    assert got["graph_data"] == {"nodes": [], "edges": [], "x": 1}
    # Refused updates change nothing.
    assert_error(await client.patch(url, json={"name": None}, headers=account.headers), 422)
    assert_error(await client.patch(url, json={"graph_data": None}, headers=account.headers),
                 422)
    assert_error(await client.patch(url, json={"name": ""}, headers=account.headers), 422)
    assert_error(await client.patch(url, json={"unknown": 1}, headers=account.headers), 422)
    assert_error(await client.patch(url, json={"graph_data": [1, 2]}, headers=account.headers),
                 422)
    assert (await client.get(url, headers=account.headers)).json() == got

    r = await client.delete(url, headers=account.headers)
    assert r.status_code == 204
    assert r.content == b""
    assert_error(await client.get(url, headers=account.headers), 404, "not_found")
    assert_error(await client.delete(url, headers=account.headers), 404, "not_found")
    assert (await client.get(f"{API}/flows", headers=account.headers)).json() == []


async def test_unknown_provider_is_422(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    r = await client.post(f"{API}/flows", json={"name": "x", "provider_id": "gpt-magic"},
                          headers=account.headers)
    error = assert_error(r, 422)
    assert "gpt-magic" in error["message"]
    flow = await create_flow(client, account)
    r = await client.patch(f"{API}/flows/{flow['id']}", json={"provider_id": "nope"},
                           headers=account.headers)
    assert_error(r, 422)
    assert (await client.get(f"{API}/flows", headers=account.headers)).json() == [flow]
    for provider in ("echo", "openai", "mistral", "glm", "openrouter", "huggingface",
                     "claude"):
        r = await client.patch(f"{API}/flows/{flow['id']}", json={"provider_id": provider},
                               headers=account.headers)
        assert r.status_code == 200, (provider, r.text)


async def test_flow_list_filters_by_project(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    p1 = (await client.post(f"{API}/projects", json={"name": "one"},
                            headers=account.headers)).json()["id"]
    p2 = (await client.post(f"{API}/projects", json={"name": "two"},
                            headers=account.headers)).json()["id"]
    a = await create_flow(client, account, name="a", project_id=p1)
    b = await create_flow(client, account, name="b", project_id=p2)
    c = await create_flow(client, account, name="c", project_id=p1)
    loose = await create_flow(client, account, name="loose")

    async def names(query: str) -> list[str]:
        r = await client.get(f"{API}/flows{query}", headers=account.headers)
        assert r.status_code == 200, r.text
        return [f["name"] for f in r.json()]

    assert await names("") == ["a", "b", "c", "loose"]
    assert await names(f"?project_id={p1}") == ["a", "c"]
    assert await names(f"?project_id={p2}") == ["b"]
    assert await names("?project_id=999999") == []
    # Moving a flow between projects.
    r = await client.patch(f"{API}/flows/{loose['id']}", json={"project_id": p2},
                           headers=account.headers)
    assert r.status_code == 200 and r.json()["project_id"] == p2
    assert await names(f"?project_id={p2}") == ["b", "loose"]
    assert {a["id"], b["id"], c["id"]} <= {
        f["id"] for f in (await client.get(f"{API}/flows", headers=account.headers)).json()}


async def test_characters_crud(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    project = (await client.post(f"{API}/projects", json={"name": "cast"},
                                 headers=account.headers)).json()["id"]
    persona = {"name": "Ada", "traits": ["curious", "precise"], "age": 36,
               "voice": {"tone": "dry", "accent": "Londres ☂"}, "weights": [0.25, 1.5]}
    r = await client.post(f"{API}/characters", json={"name": "Ada", "persona": persona,
                                                     "project_id": project},
                          headers=account.headers)
    assert r.status_code == 201, r.text
    character = r.json()
    assert character["persona"] == persona
    assert character["project_id"] == project
    assert character["user_id"] == account.id
    url = f"{API}/characters/{character['id']}"
    assert (await client.get(url, headers=account.headers)).json() == character
    r = await client.post(f"{API}/characters", json={"name": "Loose"}, headers=account.headers)
    assert r.status_code == 201 and r.json()["persona"] == {}

    r = await client.patch(url, json={"persona": {"name": "Ada", "traits": []}},
                           headers=account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["persona"] == {"name": "Ada", "traits": []}
    assert r.json()["name"] == "Ada"
    r = await client.put(url, json={"name": "Ada L.", "persona": persona, "project_id": None},
                         headers=account.headers)
    assert r.status_code == 200, r.text
    assert r.json()["project_id"] is None
    assert_error(await client.patch(url, json={"persona": None}, headers=account.headers), 422)
    assert_error(await client.patch(url, json={"name": ""}, headers=account.headers), 422)

    r = await client.get(f"{API}/characters", headers=account.headers)
    assert [c["name"] for c in r.json()] == ["Ada L.", "Loose"]
    r = await client.get(f"{API}/characters", params={"project_id": project},
                         headers=account.headers)
    assert r.json() == []
    assert (await client.delete(url, headers=account.headers)).status_code == 204
    assert_error(await client.get(url, headers=account.headers), 404, "not_found")
    assert [c["name"] for c in (await client.get(f"{API}/characters",
                                                 headers=account.headers)).json()] == ["Loose"]


async def test_projects(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    r = await client.post(f"{API}/projects", json={"name": "Saga", "description": "tome 1"},
                          headers=account.headers)
    assert r.status_code == 201, r.text
    saga = r.json()
    assert saga["name"] == "Saga" and saga["description"] == "tome 1"
    assert saga["user_id"] == account.id and isinstance(saga["id"], int)
    other = (await client.post(f"{API}/projects", json={"name": "Other"},
                               headers=account.headers)).json()
    assert other["description"] == ""
    assert_error(await client.post(f"{API}/projects", json={"name": ""},
                                   headers=account.headers), 422)
    assert_error(await client.post(f"{API}/projects", json={}, headers=account.headers), 422)

    r = await client.get(f"{API}/projects", headers=account.headers)
    assert [p["id"] for p in r.json()] == [saga["id"], other["id"]]
    r = await client.get(f"{API}/projects/{saga['id']}", headers=account.headers)
    assert r.status_code == 200 and r.json() == saga
    r = await client.post(f"{API}/projects/select", json={"user_id": account.id},
                          headers=account.headers)
    assert r.status_code == 200
    assert r.json() == (await client.get(f"{API}/projects", headers=account.headers)).json()

    # Deleting a project deletes what it holds; loose flows stay.
    flow = await create_flow(client, account, project_id=saga["id"])
    loose = await create_flow(client, account, name="loose")
    r = await client.post(f"{API}/characters", json={"name": "c", "project_id": saga["id"]},
                          headers=account.headers)
    character = r.json()
    r = await client.delete(f"{API}/projects/{saga['id']}", headers=account.headers)
    assert r.status_code == 204
    assert_error(await client.get(f"{API}/projects/{saga['id']}", headers=account.headers),
                 404)
    assert_error(await client.get(f"{API}/flows/{flow['id']}", headers=account.headers), 404)
    assert_error(await client.get(f"{API}/characters/{character['id']}",
                                  headers=account.headers), 404)
    assert (await client.get(f"{API}/flows/{loose['id']}",
                             headers=account.headers)).status_code == 200
    r = await client.get(f"{API}/projects", headers=account.headers)
    assert [p["id"] for p in r.json()] == [other["id"]]
    assert_error(await client.delete(f"{API}/projects/{saga['id']}", headers=account.headers),
                 404)


async def test_component_catalog(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await sign_up_and_login(client)
    r = await client.get(f"{API}/components", headers=account.headers)
    assert r.status_code == 200, r.text
    catalog = r.json()
    executors = app.state.registry.get(Discovered).executors
    assert {entry["type"] for entry in catalog} == set(executors)
    assert len(catalog) == len(executors)
    for entry in catalog:
        assert set(entry) >= {"type", "name", "category", "fields", "ports", "api_config",
                              "output_schema"}, entry
        assert isinstance(entry["name"], str) and entry["name"]
        assert isinstance(entry["category"], str) and entry["category"]
        assert isinstance(entry["fields"], list)
        for field in entry["fields"]:
            assert set(field) >= {"name", "kind", "default", "required", "options"}, field
            assert isinstance(field["required"], bool)
        assert isinstance(entry["ports"], list)
        for port in entry["ports"]:
            assert port["direction"] in ("input", "output"), port
            assert port["kind"] in ("text", "adapter"), port
            assert isinstance(port["name"], str) and port["name"]
        assert isinstance(entry["api_config"], dict)
        assert isinstance(entry["api_config"]["makes_api_call"], bool)
        assert isinstance(entry["output_schema"], dict)
        # Each entry is also served on its own.
        one = await client.get(f"{API}/components/{entry['type']}", headers=account.headers)
        assert one.status_code == 200 and one.json() == entry
    if executors:  # the engine's nine seed types, once they are registered
        seed = {"consistentCharacter", "sceneBuilder", "initialPrompt", "promptEnhancer",
                "translator", "storyTeller", "grammarFix", "compressor", "textOutput"}
        assert seed <= set(executors)
    assert_error(await client.get(f"{API}/components/noSuchType", headers=account.headers),
                 404, "not_found")


async def test_deleting_your_account(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    other = await sign_up_and_login(client)
    flow = await create_flow(client, account)
    # Someone else cannot delete it.
    assert_error(await client.delete(f"{API}/users/{account.id}", headers=other.headers), 404)

    r = await client.delete(f"{API}/users/{account.id}", headers=account.headers)
    assert r.status_code == 204, r.text
    # The token no longer works, nor the refresh token, nor the password.
    assert_error(await client.get(f"{API}/users/me", headers=account.headers), 401)
    assert_error(await client.get(f"{API}/flows/{flow['id']}", headers=account.headers), 401)
    assert_error(await client.post(f"{API}/auth/refresh",
                                   json={"refresh_token": account.refresh_token}), 401)
    for identifier in (account.username, account.email):
        r = await client.post(f"{API}/auth/login", json={"identifier": identifier,
                                                         "password": account.password})
        assert_error(r, 401, "invalid_credentials")
    # The email and username are free again; the new account is a different one.
    r = await client.post(f"{API}/users", json={"email": account.email,
                                                "username": account.username,
                                                "password": account.password})
    assert r.status_code == 201, r.text
    assert r.json()["id"] != account.id
    again = await client.post(f"{API}/auth/login", json={"identifier": account.username,
                                                         "password": account.password})
    assert again.status_code == 200
    fresh = {"Authorization": f"Bearer {again.json()['access_token']}"}
    assert (await client.get(f"{API}/flows", headers=fresh)).json() == []
    # The other user is untouched.
    assert (await client.get(f"{API}/users/me", headers=other.headers)).status_code == 200
