"""The HTTP surface every endpoint shares (DESIGN.md §3, §8): one error shape for every
failure, request ids, the body size limit, health checks and CORS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import PASSWORD, assert_error, sign_up_and_login

MAX_BODY = 4096
ALLOWED = "https://app.example.com"
FOREIGN = "https://evil.example.net"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"MAX_BODY_BYTES": MAX_BODY, "CORS_ORIGINS": f"{ALLOWED}, http://localhost:5173"}


def sign_up_body(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"email": f"basic{n}@example.com", "username": f"basic{n}", "password": PASSWORD,
            **extra}


async def test_unknown_path_is_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    # Other paths (/nope) are the page's client routes now: tests/test_web_serving.py.
    for url in ("/api/v1/nope", "/api/v2/users", "/api/v1/users/me/extra", "/health/nope"):
        assert_error(await client.get(url), 404, "not_found")


async def test_wrong_method_is_405_in_the_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/health")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    assert_error(await client.delete("/api/v1/auth/login"), 405, "method_not_allowed")
    assert_error(await client.get("/api/v1/auth/refresh"), 405, "method_not_allowed")


async def test_validation_error_is_422_with_details(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/users", json={"email": "x@example.com"})
    error = assert_error(r, 422, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert {"body.username", "body.password"} <= fields, error
    for detail in error["details"]:
        assert set(detail) >= {"field", "message", "type"}
    # Query and path parameters are validated the same way.
    account = await sign_up_and_login(client)
    assert_error(await client.get("/api/v1/flows/not-a-uuid", headers=account.headers), 422,
                 "validation_error")
    assert_error(await client.get("/api/v1/flows?project_id=abc", headers=account.headers),
                 422, "validation_error")
    # A JSON body that is not an object.
    assert_error(await client.post("/api/v1/users", json=[1, 2, 3]), 422, "validation_error")


async def test_malformed_json_is_400_in_the_error_shape(client: httpx.AsyncClient) -> None:
    for raw in (b"{not json", b'{"email": "a@b.c",', b"{'a': 1}", b'{"a": 1} trailing'):
        r = await client.post("/api/v1/users", content=raw,
                              headers={"Content-Type": "application/json"})
        assert_error(r, 400, "malformed_json")
    # Bytes that are not even UTF-8 are refused in the same shape.
    r = await client.post("/api/v1/users", content=b"\xff\xfe{",
                          headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert_error(r, r.status_code)


async def test_out_of_range_ids_are_422_never_500(client: httpx.AsyncClient) -> None:
    """Integer ids beyond what the database column holds (32-bit on PostgreSQL, 64-bit on
    SQLite) are invalid input, wherever they come in: path, query or body."""
    account = await sign_up_and_login(client)
    h = account.headers
    for big in (2**31, 2**63, 10**30):
        for method, url, body in [
            ("GET", f"/api/v1/projects/{big}", None),
            ("DELETE", f"/api/v1/projects/{big}", None),
            ("GET", f"/api/v1/users/{big}", None),
            ("DELETE", f"/api/v1/users/{big}", None),
            ("GET", f"/api/v1/flows?project_id={big}", None),
            ("GET", f"/api/v1/characters?project_id={big}", None),
            ("POST", "/api/v1/flows", {"name": "x", "project_id": big}),
            ("POST", "/api/v1/characters", {"name": "x", "project_id": big}),
            ("POST", "/api/v1/projects/select", {"user_id": big}),
        ]:
            r = await client.request(method, url, json=body, headers=h)
            assert_error(r, 422, "validation_error")
    # The largest id that fits is an ordinary unknown id.
    assert_error(await client.get(f"/api/v1/projects/{2**31 - 1}", headers=h), 404)
    assert_error(await client.post("/api/v1/flows", json={"name": "x", "project_id": 2**31 - 1},
                                   headers=h), 404)


async def test_an_unhandled_error_is_500_in_the_error_shape(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/api/v1/test-only-boom", boom, methods=["GET"])
    r = await client.get("/api/v1/test-only-boom", headers={"X-Request-ID": "boom-1"})
    error = assert_error(r, 500, "internal_error")
    assert error["request_id"] == "boom-1"
    assert "secret internal detail" not in r.text


async def test_missing_token_is_401_in_the_error_shape(client: httpx.AsyncClient) -> None:
    for url in ("/api/v1/users/me", "/api/v1/projects", "/api/v1/flows", "/api/v1/characters",
                "/api/v1/components", "/api/v1/events"):
        r = await client.get(url)
        assert_error(r, 401, "not_authenticated")
        assert r.headers["www-authenticate"].lower() == "bearer"


async def test_body_over_the_limit_with_content_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    big = sign_up_body(padding="x" * MAX_BODY)
    raw = json.dumps(big).encode()
    assert len(raw) > MAX_BODY
    r = await client.post("/api/v1/users", content=raw,
                          headers={"Content-Type": "application/json"})
    assert r.request.headers["content-length"] == str(len(raw))
    assert_error(r, 413, "payload_too_large")
    # Nothing was created; a body just under the limit goes through to the endpoint.
    account = await sign_up_and_login(client)
    small = {"name": "p", "description": "d" * (MAX_BODY - 200)}
    assert len(json.dumps(small)) <= MAX_BODY
    r = await client.post("/api/v1/projects", json=small, headers=account.headers)
    assert r.status_code == 201, r.text


async def _chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    yield b'{"email": "chunk@example.com", "username": "chunk", "password": "pw-123456", '
    yield b'"padding": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/users", content=_chunks(MAX_BODY * 3),
                          headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_error(r, 413, "payload_too_large")
    assert_error(await client.post("/api/v1/auth/login",
                                   json={"identifier": "chunk", "password": "pw-123456"}), 401)


async def test_chunked_body_over_the_limit_is_413_on_a_real_server(
    live_client: httpx.AsyncClient,
) -> None:
    r = await live_client.post("/api/v1/users", content=_chunks(MAX_BODY * 3),
                               headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")
    # A chunked body under the limit is served normally.
    r = await live_client.post("/api/v1/users", content=_chunks(100),
                               headers={"Content-Type": "application/json"})
    assert_error(r, 422, "validation_error")  # "padding" is not a sign-up field


async def test_every_response_has_a_request_id(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    responses = [
        await client.get("/health"),
        await client.get("/api/v1/users/me", headers=account.headers),
        await client.get("/api/v1/nope"),
        await client.put("/api/v1/health"),
        await client.get("/api/v1/users/me"),
        await client.post("/api/v1/users", json={}),
        await client.post("/api/v1/users", content=b"x" * (MAX_BODY + 1)),
        await client.options("/api/v1/users", headers={
            "Origin": ALLOWED, "Access-Control-Request-Method": "POST"}),
    ]
    seen = set()
    for r in responses:
        request_id = r.headers.get("x-request-id")
        assert request_id, (r.request.url, r.status_code)
        seen.add(request_id)
        if r.status_code >= 400:
            assert r.json()["error"]["request_id"] == request_id
    assert len(seen) == len(responses)  # a new id per request


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for given in ("abc-123", "req.2024_01-XYZ", "a" * 128,
                  "0f8fad5b-d9cb-469f-a165-70867728950e"):
        r = await client.get("/health", headers={"X-Request-ID": given})
        assert r.headers["x-request-id"] == given
        r = await client.get("/api/v1/nope", headers={"X-Request-ID": given})
        assert r.headers["x-request-id"] == given
        assert r.json()["error"]["request_id"] == given


async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    for given in ("", "a" * 129, "has space", "new\\nline", "<script>", "semi;colon"):
        r = await client.get("/api/v1/nope", headers={"X-Request-ID": given})
        request_id = r.headers["x-request-id"]
        assert request_id and request_id != given
        assert r.json()["error"]["request_id"] == request_id


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    for url in ("/health", "/api/v1/health"):
        r = await client.get(url)
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
    for url in ("/health/ready", "/api/v1/health/ready"):
        r = await client.get(url)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ready"
        assert r.json()["database"] == "ok"


async def test_cors_allows_configured_origins_only(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    r = await client.options("/api/v1/auth/login", headers={"Origin": ALLOWED, **preflight})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await client.get("/health", headers={"Origin": ALLOWED})
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
    r = await client.get("/health", headers={"Origin": "http://localhost:5173"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"

    r = await client.options("/api/v1/auth/login", headers={"Origin": FOREIGN, **preflight})
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code >= 400
    r = await client.get("/health", headers={"Origin": FOREIGN})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    # Errors carry the CORS header too, so a browser client can read them.
    r = await client.get("/api/v1/users/me", headers={"Origin": ALLOWED})
    assert_error(r, 401)
    assert r.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False)
async def test_without_cors_origins_no_cors_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
