"""A real HTTP server on loopback that speaks just enough of the OpenAI and Anthropic APIs for
the real SDKs to talk to it (DESIGN.md §7: tests point the SDKs' base URLs here).

    server = start_fake_llm_server()
    client = AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
    ...
    server.fail_next(1, status=429)          # the next request answers 429
    assert len(server.requests) == 1
    server.stop()

Answers are deterministic: the reply to a conversation is "reply: " + its last user message,
streamed in several chunks, with whitespace word counts as token usage. A last user message
that contains `[hold 2.5s]` is answered after that long: a slow model for that conversation
only, whichever process sends it and in whatever order (the scale-out tests' workers race
each other, so a queue of faults could not say which request it slows). The server runs
uvicorn in a background thread with its own event loop, so tests (on their own loop) drive it
through the thread-safe control methods below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"

MalformedKind = Literal["invalid_json", "missing_fields"]
_HOLD = re.compile(r"\[hold (\d+(?:\.\d+)?)s\]")


def reply_for(user_text: str) -> str:
    """The fake model's answer to a conversation whose last user message is `user_text`."""
    return f"reply: {user_text}"


def hold_seconds(body: Any) -> float:
    """How long the conversation's `[hold Ns]` marker asks the server to wait (0: none)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return 0.0
    match = _HOLD.search(_last_user_text(body["messages"]))
    return float(match.group(1)) if match else 0.0


def word_count(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any  # the decoded body; None when it was not JSON


@dataclass
class _Fault:
    kind: Literal["fail", "slow", "malformed", "break"]
    status: int = 500
    body: str | None = None
    seconds: float = 0.0
    malformed: MalformedKind = "invalid_json"
    after: int = 0  # "break": pieces streamed before the error event


@dataclass
class _Script:
    """Faults queued per path ("*" = whichever endpoint comes next), and what was received."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)
    received: list[RecordedRequest] = field(default_factory=list)

    def queue(self, fault: _Fault, n: int, path: str | None) -> None:
        with self.lock:
            self.faults.setdefault(path or "*", deque()).extend(_copy(fault) for _ in range(n))

    def take(self, path: str) -> _Fault | None:
        with self.lock:
            for key in (path, "*"):
                queue = self.faults.get(key)
                if queue:
                    return queue.popleft()
        return None

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.received.append(request)


def _copy(fault: _Fault) -> _Fault:
    return _Fault(fault.kind, fault.status, fault.body, fault.seconds, fault.malformed,
                  fault.after)


class FakeLLMServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        # Bind now (port 0 = a free port chosen by the OS) so the port is known before the
        # server thread starts and no other process can take it in between.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Without TCP_NODELAY (inherited by accepted sockets) a reused keep-alive connection
        # stalls ~40 ms per request on Nagle vs. delayed ACK; the tests make many requests.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._script = _Script()
        # Set in the server thread: its loop, and an event there that stop() sets.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-llm-server", daemon=True)

    # --- addresses -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What `AsyncOpenAI(base_url=...)` expects: the SDK appends `/chat/completions`."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """What `AsyncAnthropic(base_url=...)` expects: the SDK appends `/v1/messages`."""
        return self.base_url

    # --- control (thread-safe; call from the tests' thread) --------------------------------

    def fail_next(
        self, n: int = 1, status: int = 500, body: str | None = None, *, path: str | None = None
    ) -> None:
        """The next `n` requests (to `path`, or to any endpoint) answer `status` with `body`
        (default: the API's usual error JSON)."""
        self._script.queue(_Fault("fail", status=status, body=body), n, path)

    def slow_next(self, n: int = 1, seconds: float = 1.0, *, path: str | None = None) -> None:
        """The next `n` requests wait `seconds` before answering (normally)."""
        self._script.queue(_Fault("slow", seconds=seconds), n, path)

    def malformed_next(
        self, n: int = 1, kind: MalformedKind = "invalid_json", *, path: str | None = None
    ) -> None:
        """The next `n` requests answer 200 with a broken body: "invalid_json" (not JSON; in a
        stream, a chunk that is not JSON) or "missing_fields" (JSON without the answer)."""
        self._script.queue(_Fault("malformed", malformed=kind), n, path)

    def break_stream_next(self, n: int = 1, after: int = 1, *, path: str | None = None) -> None:
        """The next `n` streamed answers send `after` pieces of the reply, then an error event
        (the provider failing part-way: a transient error for the engine) and end. A request
        that does not stream answers normally."""
        self._script.queue(_Fault("break", after=after), n, path)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._script.lock:
            return list(self._script.received)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def reset(self) -> None:
        """Forget queued faults and received requests (between tests)."""
        with self._script.lock:
            self._script.faults.clear()
            self._script.received.clear()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 5.0) -> FakeLLMServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._wake.set)  # wake slow_next handlers
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await self._server.serve(sockets=[self._socket])

    # --- HTTP --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(CHAT_PATH, self._chat, methods=["POST"]),
                Route(MESSAGES_PATH, self._messages, methods=["POST"]),
            ]
        )

    async def _receive(self, request: Request) -> tuple[Any, _Fault | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = request.url.path
        self._script.record(RecordedRequest(path, dict(request.headers), body))
        fault = self._script.take(path)
        if fault is not None and fault.kind == "slow":
            await self._sleep(fault.seconds)
        hold = hold_seconds(body)
        if hold:
            await self._sleep(hold)
        return body, fault

    async def _sleep(self, seconds: float) -> None:
        # Cut short by stop(), so shutting down need not wait for a long delay to run out.
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _chat(self, request: Request) -> Response:
        body, fault = await self._receive(request)
        if fault is not None and fault.kind == "fail":
            return _error_response(fault, _openai_error(fault.status))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse(_openai_error(400, "'messages' is required"), status_code=400)
        model = str(body.get("model", ""))
        prompt = _chat_prompt_text(body["messages"])
        reply = reply_for(_last_user_text(body["messages"]))
        usage = {
            "prompt_tokens": word_count(prompt),
            "completion_tokens": word_count(reply),
            "total_tokens": word_count(prompt, reply),
        }
        malformed = fault.malformed if fault is not None and fault.kind == "malformed" else None
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            break_after = fault.after if fault is not None and fault.kind == "break" else None
            events = _chat_stream(model, reply, usage if include_usage else None, malformed,
                                  break_after)
            return _sse(events)
        if malformed == "invalid_json":
            return Response('{"id": "chatcmpl-fake", "choices": [', media_type="application/json")
        if malformed == "missing_fields":
            return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion"})
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _messages(self, request: Request) -> Response:
        body, fault = await self._receive(request)
        if fault is not None and fault.kind == "fail":
            return _error_response(fault, _anthropic_error(fault.status))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse(_anthropic_error(400, "messages: field required"), 400)
        model = str(body.get("model", ""))
        prompt = _chat_prompt_text(body["messages"]) + " " + _text_of(body.get("system", ""))
        reply = reply_for(_last_user_text(body["messages"]))
        usage = {"input_tokens": word_count(prompt), "output_tokens": word_count(reply)}
        malformed = fault.malformed if fault is not None and fault.kind == "malformed" else None
        if body.get("stream"):
            return _sse(_messages_stream(model, reply, usage, malformed))
        if malformed == "invalid_json":
            return Response('{"id": "msg_fake", "content": [', media_type="application/json")
        if malformed == "missing_fields":
            return JSONResponse({"id": "msg_fake", "type": "message", "role": "assistant"})
        return JSONResponse(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": reply}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )


def start_fake_llm_server() -> FakeLLMServer:
    """Start a server on a free loopback port; the caller stops it (wrap it in a fixture)."""
    return FakeLLMServer().start()


# --- bodies ----------------------------------------------------------------------------------


def _error_response(fault: _Fault, default_body: dict[str, Any]) -> Response:
    if fault.body is not None:
        return Response(fault.body, status_code=fault.status, media_type="application/json")
    return JSONResponse(default_body, status_code=fault.status)


def _openai_error(status: int, message: str | None = None) -> dict[str, Any]:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {
        "error": {
            "message": message or f"fake failure with HTTP {status}",
            "type": kind,
            "param": None,
            "code": None,
        }
    }


def _anthropic_error(status: int, message: str | None = None) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message or f"fake {status}"}}


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or a list of blocks with `text`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def _chat_prompt_text(messages: list[Any]) -> str:
    return " ".join(_text_of(m.get("content")) for m in messages if isinstance(m, dict))


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _chunks(text: str) -> list[str]:
    """Several pieces, cut after whitespace, that concatenate to `text`."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


# --- streams ---------------------------------------------------------------------------------


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream")


def _data(payload: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload)}\n\n"


async def _chat_stream(
    model: str,
    reply: str,
    usage: dict[str, int] | None,
    malformed: MalformedKind | None,
    break_after: int | None = None,
) -> AsyncIterator[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _data({**base, "choices": [choice]})

    pieces = _chunks(reply)
    yield chunk({"role": "assistant", "content": pieces[0]})
    if malformed == "invalid_json":
        yield "data: {not json\n\n"
    elif malformed == "missing_fields":
        yield _data(base)  # a chunk with no "choices"
    for number, piece in enumerate(pieces[1:], start=1):
        if number == break_after:
            # What OpenAI-compatible servers send when they fail mid-stream; the SDK raises.
            error = {"message": "fake overload mid-stream", "type": "server_error"}
            yield _data({"error": error})
            return
        await asyncio.sleep(0)  # let each piece go out as its own write
        yield chunk({"content": piece})
    yield chunk({}, finish="stop")
    if usage is not None:
        yield _data({**base, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


async def _messages_stream(
    model: str, reply: str, usage: dict[str, int], malformed: MalformedKind | None
) -> AsyncIterator[str]:
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
    }
    yield _data({"type": "message_start", "message": message}, "message_start")
    block = {"type": "text", "text": ""}
    yield _data(
        {"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start"
    )
    yield _data({"type": "ping"}, "ping")
    for number, piece in enumerate(_chunks(reply)):
        if number == 1 and malformed == "invalid_json":
            yield "event: content_block_delta\ndata: {not json\n\n"
        elif number == 1 and malformed == "missing_fields":
            yield _data({"type": "content_block_delta", "index": 0}, "content_block_delta")
        await asyncio.sleep(0)
        delta = {"type": "text_delta", "text": piece}
        yield _data(
            {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
        )
    yield _data({"type": "content_block_stop", "index": 0}, "content_block_stop")
    delta_usage = {"output_tokens": usage["output_tokens"]}
    yield _data(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        "message_delta",
    )
    yield _data({"type": "message_stop"}, "message_stop")
