"""Authentication before validation (DESIGN.md §3, issue 11 item 2): a caller without valid
credentials gets 401/403 from every authenticated route whatever it sends — unknown keys,
wrong types, malformed JSON, bytes that are not UTF-8, bad path and query parameters.

The routes are read from the app itself, so a route added later is walked too: every route
is taken as authenticated unless DESIGN.md §3 lists it as public (PUBLIC below)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.convertors import IntegerConvertor

from app.api.routing import AuthFirstRoute
from app.api.web import PageRoute
from app.core.security import create_token
from tests.helpers import assert_error, sign_up_and_login

# (method, path) pairs with "auth: no" in DESIGN.md §3, plus the framework's own pages.
PUBLIC = {
    ("GET", "/health"), ("GET", "/health/ready"),
    ("GET", "/api/v1/health"), ("GET", "/api/v1/health/ready"),
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/backoffice/login"), ("POST", "/api/v1/users"),
}
FRAMEWORK = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

JSON = {"Content-Type": "application/json"}
# Bodies that fail validation in every way we know of; each must lose to the missing
# credentials.
BAD_BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"surely_unknown_key": 1}', JSON),
    (b'{"name": 123, "email": false, "password": [], "nodes": "x", "flow_id": 7}', JSON),
    (b"[1, 2, 3]", JSON),
    (b'"a string"', JSON),
    (b"{not json", JSON),
    (b'{"a": 1} trailing', JSON),
    (b"\xff\xfe{", JSON),
    (b"name=x", {"Content-Type": "application/x-www-form-urlencoded"}),
    (b"plain words", {"Content-Type": "text/plain"}),
    (b"", JSON),
]
FULL_MATRIX = {"anonymous", "forged user", "deleted account"}
BAD_QUERY = {"limit": "-5", "project_id": "abc", "run_id": "nope", "flow_id": "nope",
             "since": "yesterday", "cursor": "!", "user_id": str(2**40)}


def authenticated_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path_format
        if path in FRAMEWORK or isinstance(route, APIWebSocketRoute):
            continue  # the tunnel authenticates by its own rule (4001, test_tunnel.py)
        if isinstance(route, PageRoute):
            continue  # the page itself is public; it calls the API like any client
        assert isinstance(route, APIRoute), path  # the only HTTP routes we serve
        # Every endpoint module builds its router with app.api.routing.api_router.
        assert isinstance(route, AuthFirstRoute), f"{path} does not use AuthFirstRoute"
        for method in sorted(context.methods or ()):
            if method == "HEAD" or (method, path) in PUBLIC:
                continue
            found.append((method, path, route))
    return found


def with_bad_path_params(path: str, route: APIRoute) -> list[str]:
    """The path with parameter values that reach the route but fail its validation: an
    out-of-range id, and a non-id where the path takes any text (a `{x:int}` path takes
    only digits; other text is another path, a 404)."""
    def fill(value: Callable[[str], str]) -> str:
        return re.sub(r"\{([^}:]+)[^}]*\}", lambda m: value(m.group(1)), path)

    digits_only = {name for name, convertor in route.param_convertors.items()
                   if isinstance(convertor, IntegerConvertor)}
    if not route.param_convertors:
        return [path]
    return [fill(lambda _name: str(2**40)),
            fill(lambda name: "0" if name in digits_only else "not-a-valid-id")]


def forged_token(secret: str, subject: int, role: str = "user") -> str:
    token, _ = create_token(secret=secret, subject=subject, role=role,  # type: ignore[arg-type]
                            typ="access", lifetime=timedelta(minutes=5))
    return token


async def credentials_that_fail(client: httpx.AsyncClient, app: FastAPI) -> dict[str, dict]:
    """Header sets that are not valid credentials, by name."""
    secret = app.state.settings.JWT_SECRET
    gone = await sign_up_and_login(client)
    r = await client.delete(f"/api/v1/users/{gone.id}", headers=gone.headers)
    assert r.status_code == 204, r.text
    return {
        "anonymous": {},
        "garbage bearer": {"Authorization": "Bearer garbage.token.here"},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "forged user": {"Authorization": f"Bearer {forged_token('not-' + secret, gone.id)}"},
        "forged admin": {"Authorization":
                         f"Bearer {forged_token('not-' + secret, 1, 'admin')}"},
        "expired": {"Authorization": "Bearer " + create_token(
            secret=secret, subject=gone.id, role="user", typ="access",
            lifetime=timedelta(seconds=-60))[0]},
        "refresh token": {"Authorization": f"Bearer {gone.refresh_token}"},
        # Signed with the right key, but the account is deleted: only the database knows.
        "deleted account": gone.headers,
    }


async def test_every_authenticated_route_refuses_bad_credentials_before_the_body(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    routes = authenticated_routes(app)
    # The walk found the routes DESIGN.md §3 lists (a sample that must be among them).
    seen = {(m, p) for m, p, _ in routes}
    assert {("POST", "/api/v1/auth/backoffice/create"), ("POST", "/api/v1/execution/run"),
            ("GET", "/api/v1/events"), ("PATCH", "/api/v1/flows/{flow_id}")} <= seen, seen
    failing = await credentials_that_fail(client, app)
    answers: dict[int, int] = {}
    for method, path, route in routes:
        for url in with_bad_path_params(path, route):
            for name, headers in failing.items():
                # Every bad body for the three kinds of failure (none, a bad signature, a
                # dead account); the first two bodies for the other bad tokens.
                bodies = BAD_BODIES if name in FULL_MATRIX else BAD_BODIES[:1] + BAD_BODIES[4:5]
                attempts: list[dict[str, Any]] = [{"params": BAD_QUERY}]
                attempts += [{"content": body, "headers": {**headers, **content_type}}
                             for body, content_type in bodies]
                for attempt in attempts:
                    attempt.setdefault("headers", headers)
                    r = await client.request(method, url, **attempt)
                    where = f"{method} {url} ({name}, {attempt.get('content')!r})"
                    assert r.status_code in (401, 403), f"{where}: {r.status_code} {r.text}"
                    assert_error(r, r.status_code)
                    answers[r.status_code] = answers.get(r.status_code, 0) + 1
    assert answers.get(401, 0) > 0, answers


async def test_valid_credentials_still_get_the_validation_answer(
    client: httpx.AsyncClient,
) -> None:
    """The other side: a caller who passes authentication sees 400/422 for a bad body."""
    account = await sign_up_and_login(client)
    h = account.headers
    r = await client.post("/api/v1/projects", content=b"{not json", headers={**h, **JSON})
    assert_error(r, 400, "malformed_json")
    r = await client.post("/api/v1/projects", content=b"\xff\xfe{", headers={**h, **JSON})
    assert_error(r, 400)
    r = await client.post("/api/v1/projects", json={"name": "p", "surely_unknown_key": 1},
                          headers=h)
    assert_error(r, 422, "validation_error")
    r = await client.post("/api/v1/execution/run", content=b"{", headers={**h, **JSON})
    assert_error(r, 400, "malformed_json")
    r = await client.get("/api/v1/flows/not-a-uuid", headers=h)
    assert_error(r, 422, "validation_error")
    # A user token on the admin-only route: 403, whatever the body.
    for body in (b"{", b'{"surely_unknown_key": 1}'):
        r = await client.post("/api/v1/auth/backoffice/create", content=body,
                              headers={**h, **JSON})
        assert_error(r, 403, "forbidden")
