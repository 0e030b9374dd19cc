"""One error class, one handler, one shape (DESIGN.md §3):

    {"error": {"code": "snake_case", "message": "...", "details": ..., "request_id": "..."}}
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

logger = logging.getLogger("cascade.errors")


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, status_code: int | None = None,
        details: Any = None, headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details
        self.headers = headers


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "rate_limited", 500: "internal_error", 503: "unavailable",
}


BUSY_RETRY_AFTER_S = 1


def is_busy(exc: BaseException) -> bool:
    """The database could not take the request now: no pooled connection came free within
    DB_POOL_TIMEOUT_S, or SQLite's write lock stayed taken past its busy timeout. Both pass;
    the client is told to retry (503 `busy`), never handed a 500."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True
    return (isinstance(exc, sqlalchemy.exc.OperationalError)
            and "database is locked" in str(exc.orig))


def busy_body(request_id: str) -> dict[str, Any]:
    return error_body("busy", "the server is busy; retry shortly", None, request_id)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_body(code: str, message: str, details: Any, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details,
                      "request_id": request_id}}


def error_response(
    request: Request, status: int, code: str, message: str, details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details, request_id_of(request)), status_code=status,
        headers=headers,
    )


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        details.append({"field": ".".join(loc), "message": err.get("msg", ""),
                        "type": err.get("type", "")})
    return details


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's 405 names only the methods of
    the first route whose path matched, and GET /flows and POST /flows are two routes."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        # A Mount (static files at "/") matches every method; only routes say which.
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes
               if not isinstance(route, Mount)):
            allowed.append(method)
    return allowed


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.details,
                              exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(request, 400, "malformed_json",
                                  "the request body is not valid JSON", details)
        return error_response(request, 422, "validation_error",
                              "the request is not valid", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(request, exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        if is_busy(exc):
            logger.warning("database busy (request_id=%s): %s", request_id_of(request), exc)
            return JSONResponse(busy_body(request_id_of(request)), status_code=503,
                                headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
        logger.exception("unhandled error (request_id=%s)", request_id_of(request))
        return error_response(request, 500, "internal_error", "internal server error")
