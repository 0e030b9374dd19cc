"""An OpenAPI document that tells the truth about failures (issue 11 item 11).

Endpoints declare the errors only they give (`responses=errors(404, 409)`). The errors that
come from the shared machinery are added here, from what each route is made of, so a new
route gets them without a line:

- an authenticated route (a security scheme in its dependencies): 401, 403;
- a JSON body: 400 `malformed_json`, 413 (the body limit), 422;
- any parameter or body: 422 — in the error shape, replacing FastAPI's own 422 schema;
- a route that uses the database session: 503 (`busy` when the pool is exhausted).

Every error answer has the one schema, `ErrorResponse`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from app.api.deps import get_db
from app.api.routing import auth_dependant
from app.api.v1.schemas.errors import ErrorResponse

DESCRIPTIONS = {
    400: "Malformed request: the body is not JSON (`malformed_json`), or a bad cursor",
    401: "Missing, invalid or expired credentials",
    403: "Authenticated, but not allowed",
    404: "Not found, or not yours",
    409: "Conflicts with the current state",
    413: "Request body over MAX_BODY_BYTES",
    422: "The request does not validate; `details` lists every problem",
    429: "Rate limited; see Retry-After when present",
    503: "Temporarily unavailable (`busy`: no database connection free); retry",
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_FASTAPI_422_SCHEMAS = ("HTTPValidationError", "ValidationError")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for an endpoint's own error answers."""
    return {status: {"model": ErrorResponse, "description": DESCRIPTIONS[status]}
            for status in statuses}


def _uses(dependant: Dependant, call: Any) -> bool:
    return dependant.call is call or any(_uses(sub, call) for sub in dependant.dependencies)


def common_statuses(route: Any) -> set[int]:
    """The error statuses the shared machinery can answer on this route."""
    dependant: Dependant = route.dependant
    statuses: set[int] = set()
    if auth_dependant(dependant) is not None:
        statuses |= {401, 403}
    if route.body_field is not None:
        statuses |= {400, 413, 422}
    if get_flat_params(dependant):
        statuses.add(422)
    if _uses(dependant, get_db):
        statuses.add(503)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": dict(_ERROR_REF)}}}


def complete(document: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        for method in context.methods or ():
            operation = document["paths"].get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(common_statuses(context)):
                key = str(status)
                if key not in responses or status == 422:
                    responses[key] = _error_response(status)
    text = repr(document["paths"])
    for name in _FASTAPI_422_SCHEMAS:
        if f"/{name}'" not in text:
            schemas.pop(name, None)
    return document


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   openapi_version=app.openapi_version,
                                   description=app.description, routes=app.routes)
            app.openapi_schema = complete(document, app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
