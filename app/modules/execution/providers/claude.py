"""Claude through `AsyncAnthropic` and the Messages API (DESIGN.md §7)."""

from __future__ import annotations

import asyncio
from typing import Any

from anthropic import AsyncAnthropic
from anthropic.types import Message

from app.modules.execution.providers._fields import int_or_zero, str_or
from app.modules.execution.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    ProviderError,
)
from app.modules.execution.providers.errors import (
    ANTHROPIC_ERRORS,
    bad_response,
    map_anthropic_error,
)

# The Messages API requires max_tokens; this bounds an answer when the node sets no limit.
DEFAULT_MAX_TOKENS = 1024


class ClaudeProvider:
    def __init__(self, api_key: str, base_url: str, id: str = "claude") -> None:
        self.id = id
        self.base_url = base_url
        self._api_key = api_key  # kept only to redact it from error messages
        # One client per provider instance (connection pooling); max_retries=0 because the
        # engine owns retries, so each attempt is exactly one request.
        self._client = AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            # The SDK timeout (in _params) bounds each network operation; asyncio.timeout
            # bounds the attempt as a whole.
            async with asyncio.timeout(request.timeout_s):
                response = await self._client.messages.create(**self._params(request))
        except ANTHROPIC_ERRORS as exc:
            raise self._error(exc, request) from exc
        return self._from_message(response, request)

    async def stream(self, request: CompletionRequest, on_delta: DeltaCallback) -> Completion:
        # The raw event stream rather than the `messages.stream()` helper: we need only text
        # deltas and usage, and reading the events ourselves keeps malformed ones our call.
        answer = _StreamedMessage(self.id, request.model)
        try:
            async with asyncio.timeout(request.timeout_s):
                events = await self._client.messages.create(**self._params(request), stream=True)
                async with events:  # closes the HTTP response however we leave the loop
                    async for event in events:
                        text = answer.add(event)
                        if text:
                            await on_delta(text)
        except ANTHROPIC_ERRORS as exc:
            raise self._error(exc, request) from exc
        return answer.completion()

    async def aclose(self) -> None:
        await self._client.close()

    @staticmethod
    def _params(request: CompletionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        # Claude takes the system prompt as a parameter, not as a message.
        if request.system:
            params["system"] = request.system
        # request.temperature is deliberately not sent: the SDK (2.x) dropped the sampling
        # parameters, and the API version it speaks answers 400 to any `temperature`, even
        # the default. Claude's sampling is the model's own.
        if request.timeout_s is not None:
            params["timeout"] = request.timeout_s
        return params

    def _from_message(self, response: object, request: CompletionRequest) -> Completion:
        # The SDK does not validate bodies, so a 200 with the wrong shape surfaces here.
        if not isinstance(response, Message):
            raise bad_response(self.id, "body is not a message")
        content = getattr(response, "content", None)
        if not isinstance(content, list):
            raise bad_response(self.id, "no 'content' in the answer")
        texts: list[str] = []
        for block in content:
            if getattr(block, "type", None) != "text":
                continue  # thinking or tool blocks are not part of the answer text
            text = getattr(block, "text", None)
            if not isinstance(text, str):
                raise bad_response(self.id, "a text block without 'text'")
            texts.append(text)
        usage = getattr(response, "usage", None)
        return Completion(
            text="".join(texts),
            model=str_or(getattr(response, "model", None), request.model),
            input_tokens=int_or_zero(getattr(usage, "input_tokens", 0)),
            output_tokens=int_or_zero(getattr(usage, "output_tokens", 0)),
        )

    def _error(self, exc: BaseException, request: CompletionRequest) -> ProviderError:
        return map_anthropic_error(exc, self.id, timeout_s=request.timeout_s, secret=self._api_key)


class _StreamedMessage:
    """Folds Messages API stream events into one answer: text deltas and usage."""

    def __init__(self, provider_id: str, model: str) -> None:
        self._provider_id = provider_id
        self._parts: list[str] = []
        self._model = model
        self._input_tokens = 0
        self._output_tokens = 0
        self._started = False

    def add(self, event: object) -> str | None:
        """Take one event; return its text delta, if it carries one."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = getattr(event, "message", None)
            if message is None:
                raise bad_response(self._provider_id, "message_start without 'message'")
            self._started = True
            self._model = str_or(getattr(message, "model", None), self._model)
            self._take_usage(getattr(message, "usage", None))
        elif kind == "content_block_delta":
            delta = getattr(event, "delta", None)
            if delta is None:
                raise bad_response(self._provider_id, "content_block_delta without 'delta'")
            # Other delta kinds (tool input, thinking) are not part of the answer text.
            text = getattr(delta, "text", None)
            if getattr(delta, "type", None) == "text_delta" and isinstance(text, str) and text:
                self._parts.append(text)
                return text
        elif kind == "message_delta":
            self._take_usage(getattr(event, "usage", None))
        return None

    def completion(self) -> Completion:
        if not self._started:
            raise bad_response(self._provider_id, "stream ended without a message_start event")
        text = "".join(self._parts)
        return Completion(text, self._model, self._input_tokens, self._output_tokens)

    def _take_usage(self, usage: object) -> None:
        # Counts are cumulative (message_delta repeats the totals so far): they replace the
        # earlier ones; a count an event leaves out keeps its earlier value.
        self._input_tokens = int_or_zero(getattr(usage, "input_tokens", None)) or self._input_tokens
        self._output_tokens = (
            int_or_zero(getattr(usage, "output_tokens", None)) or self._output_tokens
        )
