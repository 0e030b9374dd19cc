"""Map SDK exceptions to `ProviderError` (DESIGN.md §7).

The engine decides retries from `ProviderError.transient` alone, so every SDK failure must land
on one of a few stable codes:

    rate_limited           429                                       transient
    provider_unavailable   5xx, or an error event inside a stream    transient
    provider_connection    could not connect / connection dropped    transient
    provider_timeout       the attempt ran past `timeout_s` (or 408) transient
    provider_auth          401, 403                                  not transient
    provider_bad_request   any other 4xx                             not transient
    provider_bad_response  unparseable body or missing fields        not transient
    provider_error         any other SDK error (misconfiguration)    not transient

Messages name the provider and the HTTP status, and carry the upstream explanation when there
is one. They never carry the API key: authentication failures omit the upstream text (OpenAI's
401 message quotes part of the key) and every other text has the key redacted.
"""

from __future__ import annotations

import json

import anthropic
import httpx2
import openai

from app.modules.execution.providers.base import ProviderError

_DETAIL_LIMIT = 300

# Anthropic reports errors inside an SSE stream with HTTP 200; its `error.type` tells us what
# the status would have been, so both paths share one status table.
_ANTHROPIC_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# What a provider's `except` clause catches and hands to the mapper. Narrower than `Exception`
# so a bug in our own code, or an error raised by the engine's delta callback, is not disguised
# as a provider failure. JSONDecodeError: the SDKs parse bodies and SSE data with `json`.
OPENAI_ERRORS: tuple[type[BaseException], ...] = (
    openai.OpenAIError,
    httpx2.HTTPError,
    json.JSONDecodeError,
    TimeoutError,
)
ANTHROPIC_ERRORS: tuple[type[BaseException], ...] = (
    anthropic.AnthropicError,
    httpx2.HTTPError,
    json.JSONDecodeError,
    TimeoutError,
)


def bad_response(provider_id: str, what: str) -> ProviderError:
    """A 2xx answer we cannot use: retrying the same request would most likely fail the same."""
    return ProviderError(
        "provider_bad_response", f"{provider_id}: malformed response: {what}", transient=False
    )


def map_openai_error(
    exc: BaseException, provider_id: str, *, timeout_s: float | None = None, secret: str = ""
) -> ProviderError:
    """Translate an `openai` SDK (or transport) exception into a `ProviderError`."""
    # Order matters: APITimeoutError is an APIConnectionError, and APIResponseValidationError
    # and APIStatusError are both APIErrors.
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError):
        return _timeout(provider_id, timeout_s)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return _connection(provider_id, exc, secret)
    if isinstance(exc, json.JSONDecodeError):
        return _invalid_json(provider_id, exc)
    if isinstance(exc, httpx2.DecodingError):  # a body the transport could not decompress
        return bad_response(provider_id, "body could not be decoded")
    if isinstance(exc, openai.APIResponseValidationError):
        return bad_response(provider_id, "body does not match the API's schema")
    if isinstance(exc, openai.APIStatusError):
        detail = _body_message(exc.body) or exc.message
        return _from_status(provider_id, exc.status_code, detail, secret)
    if isinstance(exc, openai.APIError):
        # An `error` event inside an otherwise successful (200) stream: the server failed
        # part-way, which is the 5xx situation.
        detail = _body_message(exc.body) or exc.message
        return _from_status(provider_id, 500, detail, secret, in_stream=True)
    return _unexpected(provider_id, exc, secret)


def map_anthropic_error(
    exc: BaseException, provider_id: str, *, timeout_s: float | None = None, secret: str = ""
) -> ProviderError:
    """Translate an `anthropic` SDK (or transport) exception into a `ProviderError`."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException | TimeoutError):
        return _timeout(provider_id, timeout_s)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return _connection(provider_id, exc, secret)
    if isinstance(exc, json.JSONDecodeError):
        return _invalid_json(provider_id, exc)
    if isinstance(exc, httpx2.DecodingError):  # a body the transport could not decompress
        return bad_response(provider_id, "body could not be decoded")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return bad_response(provider_id, "body does not match the API's schema")
    if isinstance(exc, anthropic.APIStatusError):
        detail = _body_message(exc.body) or exc.message
        status = exc.status_code
        if status < 400:  # an `error` event inside a 200 stream
            error_type = _anthropic_error_type(exc.body)
            status = _ANTHROPIC_TYPE_STATUS.get(error_type or "", 500)
            return _from_status(provider_id, status, detail, secret, in_stream=True)
        return _from_status(provider_id, status, detail, secret)
    return _unexpected(provider_id, exc, secret)


def _from_status(
    provider_id: str, status: int, detail: str, secret: str, *, in_stream: bool = False
) -> ProviderError:
    where = "error event in stream" if in_stream else f"HTTP {status}"
    http_status = None if in_stream else status  # a stream's errors arrive with HTTP 200
    if status in (401, 403):
        # No upstream text here: providers quote (part of) the rejected key in it.
        return ProviderError(
            "provider_auth",
            f"{provider_id}: authentication failed ({where}); check the provider's API key",
            transient=False,
            status=http_status,
        )
    if status == 429:
        code, what, transient = "rate_limited", "rate limited", True
    elif status == 408:
        # The server gave up waiting for us: a timeout like our own.
        code, what, transient = "provider_timeout", "request timed out", True
    elif status >= 500:
        code, what, transient = "provider_unavailable", "provider unavailable", True
    else:
        code, what, transient = "provider_bad_request", "request rejected", False
    text = _clean(detail, secret)
    message = f"{provider_id}: {what} ({where})" + (f": {text}" if text else "")
    return ProviderError(code, message, transient=transient, status=http_status)


def _timeout(provider_id: str, timeout_s: float | None) -> ProviderError:
    limit = f" after {timeout_s:g} s" if timeout_s is not None else ""
    return ProviderError(
        "provider_timeout", f"{provider_id}: request timed out{limit}", transient=True
    )


def _connection(provider_id: str, exc: BaseException, secret: str) -> ProviderError:
    # The SDK's own message is just "Connection error."; the transport error under it says why.
    cause = exc.__cause__ or exc
    reason = _clean(str(cause) or type(cause).__name__, secret)
    return ProviderError(
        "provider_connection",
        f"{provider_id}: connection to {_origin(exc)} failed: {reason}",
        transient=True,
    )


def _invalid_json(provider_id: str, exc: json.JSONDecodeError) -> ProviderError:
    # Only the parser's position, never the document: it is the provider's text, not ours.
    return bad_response(provider_id, f"body is not valid JSON ({exc.msg} at char {exc.pos})")


def _origin(exc: BaseException) -> str:
    """scheme://host:port of the failed request; the path and query are left out so nothing
    sensitive in them reaches a message."""
    try:
        if isinstance(exc, openai.APIError | anthropic.APIError | httpx2.RequestError):
            url = exc.request.url
            return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    except RuntimeError:  # an httpx error raised without its request
        pass
    return "the provider"


def _unexpected(provider_id: str, exc: BaseException, secret: str) -> ProviderError:
    # An SDK error outside the HTTP taxonomy (say, a client misconfiguration): retrying will
    # not help, and the message should still name the provider.
    text = _clean(str(exc) or type(exc).__name__, secret)
    return ProviderError("provider_error", f"{provider_id}: {text}", transient=False)


def _body_message(body: object) -> str:
    """`error.message` of the usual `{"error": {"message": ...}}` body (OpenAI and Anthropic)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if isinstance(body, str):
        return body
    return ""


def _anthropic_error_type(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _clean(text: str, secret: str) -> str:
    """Upstream text fit for a message: key redacted first (so truncation cannot leave a
    fragment of it), whitespace collapsed, length bounded."""
    # Short secrets are not redacted: replacing every "ab" in a message would garble it, and a
    # real key is never that short.
    if secret and len(secret) >= 8:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
