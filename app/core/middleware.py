"""Pure ASGI middleware: a request id on every response, and the request body limit."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import BUSY_RETRY_AFTER_S, busy_body, is_busy

logger = logging.getLogger("cascade.http")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class _BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length (chunked) passes the limit.

    An HTTPException, because FastAPI turns any other error raised while it reads the body
    into a 400 "error parsing the body"; this one it re-raises, and the app's handler
    answers 413 in the error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def _error(code: str, message: str, request_id: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": None,
                                 "request_id": request_id}}).encode()


class RequestContextMiddleware:
    """Sets `request.state.request_id` (the client's X-Request-ID if sane, else a new one),
    echoes it on every response, refuses bodies over `max_body_bytes` with 413, and turns an
    unhandled error into the documented 500 shape (FastAPI's own 500 path bypasses us)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        async def respond(status: int, body: bytes, retry_after: int | None = None) -> None:
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]
            if retry_after is not None:
                headers.append((b"retry-after", str(retry_after).encode()))
            await send_with_id({"type": "http.response.start", "status": status,
                                "headers": headers})
            await send_with_id({"type": "http.response.body", "body": body})

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await respond(413, _error("payload_too_large",
                                      f"request body over {self.max_body_bytes} bytes",
                                      request_id))
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if not started:
                await respond(413, _error("payload_too_large",
                                          f"request body over {self.max_body_bytes} bytes",
                                          request_id))
        except Exception as exc:
            if is_busy(exc):  # e.g. the request's commit found no free connection
                logger.warning("database busy (request_id=%s): %s", request_id, exc)
                if not started:
                    await respond(503, json.dumps(busy_body(request_id)).encode(),
                                  retry_after=BUSY_RETRY_AFTER_S)
                return
            logger.exception("unhandled error (request_id=%s)", request_id)
            if not started:
                await respond(500, _error("internal_error", "internal server error",
                                          request_id))


def redact_query(text: Any) -> Any:
    """Hide token values in anything a log line prints."""
    if isinstance(text, str) and "token=" in text:
        return re.sub(r"(token=)[^&\s\"']+", r"\1[redacted]", text)
    return text
