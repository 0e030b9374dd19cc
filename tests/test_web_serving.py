"""The page served at `/` (DESIGN.md §9): client routes fall back to index.html, hashed assets
are cached for a year, the page carries its Content-Security-Policy, and the API's paths keep
their JSON errors. Each test serves a small build of its own from a temporary folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.api.web import DEFAULT_DIST, IMMUTABLE, content_security_policy
from tests.helpers import assert_error

INDEX = ('<!doctype html><html><head><script type="module" src="/assets/index-abc123.js">'
         '</script></head><body><div id="root"></div></body></html>')
SCRIPT = "console.log('cascade');"


@pytest.fixture
def backend() -> str:
    # Serving files does not touch the database: one backend is enough.
    return "sqlite"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text(SCRIPT)
    (root / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return root


@pytest.fixture
def page_app(app: FastAPI, dist: Path) -> FastAPI:
    app.state.web_dist = dist
    return app


@pytest.fixture
async def page(page_app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=page_app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


def assert_page(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]


def test_the_app_serves_the_committed_build_by_default(app: FastAPI) -> None:
    assert app.state.web_dist == DEFAULT_DIST
    assert DEFAULT_DIST.parts[-3:] == ("app", "web", "dist")


@pytest.mark.parametrize("path", ["/", "/login", "/signup", "/events", "/flows/3f2a",
                                  "/flows/3f2a/runs/9c1d", "/some/other/page", "/index.html"])
async def test_client_routes_fall_back_to_index_html(page: httpx.AsyncClient, path: str) -> None:
    assert_page(await page.get(path))


async def test_head_of_the_page(page: httpx.AsyncClient) -> None:
    response = await page.head("/flows/3f2a")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b""


async def test_hashed_assets_are_immutable(page: httpx.AsyncClient) -> None:
    response = await page.get("/assets/index-abc123.js")
    assert response.status_code == 200
    assert response.text == SCRIPT
    assert response.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    assert "javascript" in response.headers["content-type"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_other_build_files_are_revalidated(page: httpx.AsyncClient) -> None:
    response = await page.get("/favicon.svg")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.headers["cache-control"] == "no-cache"


async def test_a_missing_asset_is_a_json_404_not_the_page(page: httpx.AsyncClient) -> None:
    error = assert_error(await page.get("/assets/index-old999.js"), 404, "not_found")
    assert "/assets/index-old999.js" in error["message"]


@pytest.mark.parametrize("path", ["/assets/%2e%2e/%2e%2e/secret.txt",
                                  "/assets/..%2f..%2fsecret.txt"])
async def test_nothing_outside_the_build_is_served(page: httpx.AsyncClient, path: str) -> None:
    response = await page.get(path)
    assert "outside the build" not in response.text
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/api", "/api/v1/nope", "/api/v2/flows", "/docs/nope",
                                  "/health/nope", "/redoc/x", "/openapi.json/x"])
async def test_api_paths_keep_their_json_404(page: httpx.AsyncClient, path: str) -> None:
    assert_error(await page.get(path), 404)
    # Not a 405 either: the page's route does not claim the path for GET.
    assert_error(await page.post(path, json={}), 404)


async def test_the_api_docs_and_health_are_untouched(page: httpx.AsyncClient) -> None:
    assert (await page.get("/health")).json() == {"status": "ok"}
    assert (await page.get("/api/v1/health")).json() == {"status": "ok"}
    docs = await page.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "content-security-policy" not in docs.headers  # the page's policy is the page's
    redoc = await page.get("/redoc")
    assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
    spec = (await page.get("/openapi.json")).json()
    assert spec["info"]["title"] == "Cascade"
    assert all(path.startswith(("/api/", "/health")) for path in spec["paths"]), spec["paths"]
    assert (await page.get("/api/v1/flows")).status_code == 401


async def test_other_methods_on_a_page_route_are_refused(page: httpx.AsyncClient) -> None:
    assert_error(await page.post("/login", json={}), 405, "method_not_allowed")


def test_the_policy_names_the_tunnel_on_the_same_host_only() -> None:
    csp = content_security_policy("127.0.0.1:8000")
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    # A Host header that is not a plain host[:port] is not echoed into the header.
    for bad in ["evil.example; script-src *", "a b", "x\r\nSet-Cookie: y", "", None]:
        assert content_security_policy(bad).count("connect-src 'self';") == 1


async def test_the_page_policy_uses_the_request_host(page: httpx.AsyncClient) -> None:
    response = await page.get("/", headers={"Host": "cascade.local:9000"})
    assert "connect-src 'self' ws://cascade.local:9000 wss://cascade.local:9000;" in (
        response.headers["content-security-policy"])


async def test_without_a_build_the_api_still_works_and_the_root_says_so(
        app: FastAPI, tmp_path: Path) -> None:
    app.state.web_dist = tmp_path / "not-built"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for path in ["/", "/flows/3f2a"]:
            error = assert_error(await c.get(path), 503, "page_not_built")
            assert "npm run build" in error["message"]
        assert (await c.get("/health")).json() == {"status": "ok"}
        assert (await c.get("/api/v1/components")).status_code == 401
