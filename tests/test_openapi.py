"""The OpenAPI document, read statically (issue 11 item 11), and the routing fixes the fuzz
test found: every error status is declared with the one error schema, the constraints the
server enforces are in the schemas, 405 lists every method of a path, bodies refuse what
their schema refuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import assert_error, sign_up_and_login

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items()
            for method, op in item.items()]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_error_status_has_the_error_schema(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error"}
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (method, path, status)
        statuses = set(op["responses"])
        if op.get("security"):
            assert {"401", "403"} <= statuses, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= statuses, (method, path)
        if op.get("parameters") or "requestBody" in op:
            assert "422" in statuses, (method, path)
        if path.startswith("/api/v1/") and not path.endswith("/health"):
            assert "503" in statuses, (method, path)  # every such route uses the database


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_route_specific_statuses_are_declared(document: dict[str, Any]) -> None:
    paths = document["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"401", "429"} <= statuses("/api/v1/auth/login", "post")
    assert {"409"} <= statuses("/api/v1/users", "post")
    assert {"404", "429", "202"} <= statuses("/api/v1/execution/run", "post")
    assert {"404", "409"} <= statuses("/api/v1/execution/runs/{run_id}/cancel", "post")
    assert {"400"} <= statuses("/api/v1/events", "get")
    assert {"404"} <= statuses("/api/v1/flows/{flow_id}", "patch")
    events_200 = paths["/api/v1/events"]["get"]["responses"]["200"]["content"]
    assert set(events_200) == {"application/json", "application/x-ndjson"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_request_constraints_are_in_the_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    password = schemas["UserCreate"]["properties"]["password"]
    assert password["maxLength"] == 72 and password["minLength"] == 8
    assert {"pattern": "^[\\x00-\\x7F]{8,72}$"} in password["anyOf"]
    assert schemas["UserCreate"]["properties"]["email"]["format"] == "email"
    assert schemas["UserCreate"]["additionalProperties"] is False
    assert schemas["FlowUpdate"]["properties"]["name"]["type"] == "string"  # never null
    run = schemas["RunRequest"]["properties"]
    assert "uuid" in str(run["flow_id"]) and "enum" in str(run["provider_id"])
    params = {p["name"]: p for p in document["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert "pattern" in str(params["since"]["schema"])
    project = document["paths"]["/api/v1/projects/{project_id}"]["get"]["parameters"][0]
    assert project["schema"]["maximum"] == 2**31 - 1


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    r = await client.request("OPTIONS", "/api/v1/flows", headers=account.headers)
    assert_error(r, 405, "method_not_allowed")
    # HEAD is listed exactly when the framework serves it.
    head = (await client.head("/api/v1/flows", headers=account.headers)).status_code != 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"} | ({"HEAD"} if head else set())
    r = await client.delete("/api/v1/users/me", headers=account.headers)
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["allow"].split(", ")) == {"GET"} | ({"HEAD"} if head else set())
    r = await client.get("/api/v1/projects/select", headers=account.headers)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    # Digits still reach the {id} routes, and out-of-range ids are still 422.
    assert_error(await client.get("/api/v1/projects/12345", headers=account.headers), 404)
    assert_error(await client.get(f"/api/v1/projects/{2**31}", headers=account.headers), 422)


async def test_bodies_refuse_what_the_schema_refuses(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    h = account.headers
    for bad in (True, "7", 0, 1.5):
        r = await client.post("/api/v1/projects/select", json={"user_id": bad}, headers=h)
        assert_error(r, 422, "validation_error")
    r = await client.post("/api/v1/projects/select", json={"user_id": float(account.id)},
                          headers=h)
    assert r.status_code == 200, r.text  # 7.0 is a JSON Schema integer
    flow = (await client.post("/api/v1/flows", json={"name": "f"}, headers=h)).json()
    for key in ("name", "description", "graph_data"):
        r = await client.patch(f"/api/v1/flows/{flow['id']}", json={key: None}, headers=h)
        assert_error(r, 422, "validation_error")
    r = await client.patch(f"/api/v1/flows/{flow['id']}", json={"provider_id": None},
                           headers=h)
    assert r.status_code == 200, r.text
    for since in ("0.5", "yesterday", "2026-02-30T00:00:00", "2026-01-01"):
        r = await client.get("/api/v1/events", params={"since": since}, headers=h)
        assert_error(r, 422, "validation_error")
    for since in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                  "2024-02-29T12:00:00.5Z"):
        r = await client.get("/api/v1/events", params={"since": since}, headers=h)
        assert r.status_code == 200, (since, r.text)
