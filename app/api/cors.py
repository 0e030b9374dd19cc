"""CORS with refusals in the one error shape (DESIGN.md §3).

Starlette's CORSMiddleware answers a refused preflight with a plain-text 400. Here a
preflight from an origin that is not in CORS_ORIGINS gets 403 `origin_not_allowed`, and any
other refused preflight (a private-network request) 400 `cors_preflight_refused`, both as
`{"error": {...}}` with the request id. Everything else is Starlette's behaviour.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from app.core.errors import error_body


class ErrorShapeCORSMiddleware(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                if response.status_code != 200:
                    response = self._refusal(scope, origin, response)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _refusal(self, scope: Scope, origin: str, refused: Response) -> Response:
        request_id = str(scope.get("state", {}).get("request_id", ""))
        if not self.is_allowed_origin(origin):
            status, code, message = 403, "origin_not_allowed", f"origin {origin!r} is not allowed"
        else:
            status, code = 400, "cors_preflight_refused"
            message = bytes(refused.body).decode("utf-8", "replace")
        # Vary stays, so caches keep answers for different origins apart.
        vary = {"Vary": refused.headers["vary"]} if "vary" in refused.headers else {}
        return JSONResponse(error_body(code, message, None, request_id), status_code=status,
                            headers=vary)
