"""The reference flow builder (DESIGN.md §9): the built page in app/web/dist served at `/`.

Hashed assets under /assets/ are cached for a year (their names change with their content);
index.html is `no-cache`, so a new build is picked up on the next load. Every other path that
is not the API's falls back to index.html: the page routes on the client (/login, /flows/{id},
/events, ...). The API's own paths never reach this route, so their 404s stay JSON errors.

The build is looked up per request, not at start-up: the app starts (API only) without it,
and `/` says how to build it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from app.core.errors import NotFound, error_response

DEFAULT_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

# Paths the page never answers: their own routes do, or the 404 stays the API's JSON error.
RESERVED_PREFIXES = ("/api", "/docs", "/openapi.json", "/redoc", "/health")

IMMUTABLE = "public, max-age=31536000, immutable"

# A Host header we are willing to echo into the policy: a name or address and a port.
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def content_security_policy(host: str | None) -> str:
    """The page's policy: its own scripts only, no inline script, no plugins, no framing.

    `connect-src 'self'` covers fetch to the API; the tunnel is a ws:// (or wss://) URL on the
    same host, which CSP level 2 browsers do not count as 'self', so the same host is named
    with both WebSocket schemes (never the bare `ws:` scheme, which would allow any host).
    React Flow positions nodes with style attributes, hence 'unsafe-inline' for styles only.
    """
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        f"connect-src {connect}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED_PREFIXES)


class PageRoute(Route):
    """A catch-all GET route that does not match the API's paths at all (not even partially,
    which would turn an unknown API path's 404 into a 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _reserved(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


def _dist_of(request: Request) -> Path:
    dist: Path = request.app.state.web_dist
    return dist


def _file_in(dist: Path, relative: str) -> Path | None:
    """`relative` inside `dist` as an existing file, or None (also for any escape attempt)."""
    try:
        root = dist.resolve()
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def _page_headers(request: Request, cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": content_security_policy(request.headers.get("host")),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


async def serve_page(request: Request) -> Response:
    dist = _dist_of(request)
    index = dist / "index.html"
    if not index.is_file():
        return error_response(
            request, 503, "page_not_built",
            "the web page is not built (app/web/dist/index.html is missing): the API works under "
            "/api/v1; build the page with `npm ci && npm run build` in web/")
    path: str = request.path_params.get("path", "")
    if path.startswith("assets/"):
        asset = _file_in(dist, path)
        if asset is None:
            # A missing asset is a 404, never the page: a stale index.html asking for an old
            # hash must fail loudly rather than run HTML as a script.
            raise NotFound(f"no such asset: /{path}")
        return FileResponse(asset, headers=_page_headers(request, IMMUTABLE))
    top_level = _file_in(dist, path) if path and path != "index.html" else None
    if top_level is not None:
        # favicon and the like: not hashed, so revalidated like the page.
        return FileResponse(top_level, headers=_page_headers(request, "no-cache"))
    return FileResponse(index, media_type="text/html; charset=utf-8",
                        headers=_page_headers(request, "no-cache"))


def install_web(app: FastAPI, dist: Path = DEFAULT_DIST) -> None:
    """Serve the page from `dist`; call after every other route is included (it is last)."""
    app.state.web_dist = dist
    route: Any = PageRoute("/{path:path}", serve_page, methods=["GET", "HEAD"],
                           include_in_schema=False)
    app.router.routes.append(route)
