"""CORS preflights (DESIGN.md §3, issue 11 item 7): an origin outside CORS_ORIGINS gets 403
`origin_not_allowed` in the one error shape; allowed origins keep working."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import assert_error, sign_up_and_login

ALLOWED = "https://app.example.com"
FOREIGN = "https://evil.example.net"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"CORS_ORIGINS": f"{ALLOWED},http://localhost:5173"}


async def test_a_foreign_preflight_is_403_in_the_error_shape(client: httpx.AsyncClient) -> None:
    for url in ("/api/v1/auth/login", "/api/v1/flows", "/api/v1/nope", "/health"):
        for method in ("POST", "GET", "DELETE"):
            r = await client.options(url, headers={
                "Origin": FOREIGN, **PREFLIGHT, "Access-Control-Request-Method": method})
            error = assert_error(r, 403, "origin_not_allowed")
            assert FOREIGN in error["message"]
            assert r.headers["content-type"].startswith("application/json")
            assert "access-control-allow-origin" not in r.headers
            assert "origin" in r.headers["vary"].lower()
    # An origin that only looks like an allowed one is foreign too.
    for origin in (ALLOWED + ".evil.net", ALLOWED.replace("https", "http"), "null"):
        r = await client.options("/api/v1/flows", headers={"Origin": origin, **PREFLIGHT})
        assert_error(r, 403, "origin_not_allowed")


async def test_allowed_origins_keep_working(client: httpx.AsyncClient) -> None:
    for origin in (ALLOWED, "http://localhost:5173"):
        r = await client.options("/api/v1/flows", headers={"Origin": origin, **PREFLIGHT})
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-headers"] == PREFLIGHT[
            "Access-Control-Request-Headers"]
        assert r.headers["x-request-id"]
    # The actual request after the preflight carries the CORS headers, errors included.
    account = await sign_up_and_login(client)
    r = await client.get("/api/v1/flows", headers={"Origin": ALLOWED, **account.headers})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = await client.get("/api/v1/flows", headers={"Origin": ALLOWED})
    assert_error(r, 401)
    assert r.headers["access-control-allow-origin"] == ALLOWED


async def test_other_refused_preflights_are_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    """An allowed origin asking for private-network access (not enabled) is refused with 400,
    in the shape, not Starlette's plain text."""
    r = await client.options("/api/v1/flows", headers={
        "Origin": ALLOWED, **PREFLIGHT, "Access-Control-Request-Private-Network": "true"})
    error = assert_error(r, 400, "cors_preflight_refused")
    assert "private-network" in error["message"]


async def test_simple_requests_from_foreign_origins_get_no_cors_grant(
    client: httpx.AsyncClient,
) -> None:
    """Not a preflight (no Access-Control-Request-Method): served as usual, without the
    Access-Control-Allow-Origin a browser would need to read it."""
    r = await client.get("/health", headers={"Origin": FOREIGN})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    # OPTIONS without the preflight header is no preflight either: the router answers 405.
    r = await client.options("/health", headers={"Origin": FOREIGN})
    assert_error(r, 405, "method_not_allowed")


@pytest.mark.parametrize("settings_overrides", [{}], indirect=False, ids=["no-cors-origins"])
async def test_without_cors_origins_every_preflight_is_foreign(
    client: httpx.AsyncClient,
) -> None:
    r = await client.options("/api/v1/flows", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert_error(r, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/health", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
