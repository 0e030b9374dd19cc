"""The route class every REST endpoint uses: authentication before validation (DESIGN.md §3).

FastAPI solves a route's dependencies (where authentication lives) before it validates path,
query and body fields, so an anonymous caller with a bad body already gets 401. One case
escapes that order: FastAPI parses a JSON body *before* it solves any dependency, and a body
that is not JSON (or not even UTF-8) fails there with 400. `AuthFirstRoute` catches those two
failures and, on an authenticated route, first runs the route's own authentication
dependencies; their 401/403 wins, and only a caller that passes them sees the 400.

A route is authenticated when a security scheme (HTTPBearer) is somewhere in its dependency
tree — the same test FastAPI uses to put `security` in the OpenAPI document — so a new route
that takes `CurrentUser` is covered without a line here. Valid requests never pay for this:
the extra dependency run happens only on the error path.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import solve_dependencies
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from starlette.exceptions import HTTPException

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _uses_security(dependant: Dependant) -> bool:
    if isinstance(dependant.call, SecurityBase):
        return True
    return any(_uses_security(sub) for sub in dependant.dependencies)


def auth_dependant(dependant: Dependant) -> Dependant | None:
    """A dependant holding only the route's authenticating dependencies (those with a security
    scheme in their tree, with everything they need: the session, the settings), or None for
    a public route."""
    auth = [sub for sub in dependant.dependencies if _uses_security(sub)]
    if not auth:
        return None
    return Dependant(dependencies=auth, call=dependant.call, path=dependant.path)


def _is_body_parse_error(exc: Exception) -> bool:
    """The two answers FastAPI gives before solving dependencies: malformed JSON
    (RequestValidationError json_invalid) and an unreadable body (HTTPException 400)."""
    if isinstance(exc, RequestValidationError):
        return any(e.get("type") == "json_invalid" for e in exc.errors())
    return isinstance(exc, HTTPException) and exc.status_code == 400


class AuthFirstRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        # The route's own dependant: dependencies added by include_router() are not seen
        # here (Cascade adds none; the auth-first test would fail if one did).
        auth = auth_dependant(self.dependant)
        if auth is None:
            return handler

        async def authenticate(request: Request) -> None:
            """Raises the caller's 401/403 when the credentials are not valid. Only called
            before the route's own dependencies ran, so no session is open yet; the one
            opened here closes with the request, as usual."""
            await solve_dependencies(
                request=request, dependant=auth, body=None,
                async_exit_stack=request.scope["fastapi_inner_astack"],
                embed_body_fields=False)

        async def authenticate_first(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, HTTPException) as exc:
                if not _is_body_parse_error(exc):
                    raise
                await authenticate(request)
                raise

        return authenticate_first


def api_router(*, prefix: str = "", tags: Sequence[str | Enum] | None = None) -> APIRouter:
    """The APIRouter every module in api/v1/endpoints uses."""
    return APIRouter(prefix=prefix, tags=list(tags or []), route_class=AuthFirstRoute)
