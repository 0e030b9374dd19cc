"""OpenAI-compatible chat completions through `AsyncOpenAI` (DESIGN.md §7).

One class serves OpenAI, Mistral, GLM, OpenRouter, HuggingFace and any local server that speaks
the same API: only the id, key and base URL differ.
"""

from __future__ import annotations

import asyncio
from typing import Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from app.modules.execution.providers._fields import int_or_zero, str_or
from app.modules.execution.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    ProviderError,
)
from app.modules.execution.providers.errors import OPENAI_ERRORS, bad_response, map_openai_error


class OpenAICompatibleProvider:
    def __init__(self, id: str, api_key: str, base_url: str) -> None:
        self.id = id
        self.base_url = base_url
        self._api_key = api_key  # kept only to redact it from error messages
        # One client per provider instance: its connection pool is reused across calls.
        # max_retries=0 because the engine owns retries; each attempt is one request.
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)

    async def complete(self, request: CompletionRequest) -> Completion:
        try:
            # The SDK timeout (in _params) bounds each network operation; asyncio.timeout
            # bounds the attempt as a whole, which matters for a slowly trickling stream.
            async with asyncio.timeout(request.timeout_s):
                response = await self._client.chat.completions.create(
                    **self._params(request), stream=False
                )
        except OPENAI_ERRORS as exc:
            raise self._error(exc, request) from exc
        return self._from_response(response, request)

    async def stream(self, request: CompletionRequest, on_delta: DeltaCallback) -> Completion:
        answer = _StreamedChat(self.id, request.model)
        try:
            async with asyncio.timeout(request.timeout_s):
                chunks = await self._client.chat.completions.create(
                    **self._params(request),
                    stream=True,
                    # Without this the stream carries no token counts.
                    stream_options={"include_usage": True},
                )
                async with chunks:  # closes the HTTP response however we leave the loop
                    async for chunk in chunks:
                        for text in answer.add(chunk):
                            await on_delta(text)
        except OPENAI_ERRORS as exc:
            raise self._error(exc, request) from exc
        return answer.completion()

    async def aclose(self) -> None:
        await self._client.close()

    @staticmethod
    def _params(request: CompletionRequest) -> dict[str, Any]:
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        # Unset options are left out, not sent as null: some compatible servers reject nulls.
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            # `max_tokens`, not OpenAI's newer `max_completion_tokens`: every compatible
            # server understands this one.
            params["max_tokens"] = request.max_tokens
        if request.timeout_s is not None:
            params["timeout"] = request.timeout_s
        return params

    def _from_response(self, response: object, request: CompletionRequest) -> Completion:
        # The SDK does not validate bodies (and returns a bare string for a non-JSON content
        # type), so a 200 with the wrong shape surfaces here as missing attributes.
        if not isinstance(response, ChatCompletion):
            raise bad_response(self.id, "body is not a chat completion")
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise bad_response(self.id, "no 'choices' in the answer")
        text = getattr(getattr(choices[0], "message", None), "content", None)
        if not isinstance(text, str):
            raise bad_response(self.id, "no text in 'choices[0].message.content'")
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            model=str_or(getattr(response, "model", None), request.model),
            input_tokens=int_or_zero(getattr(usage, "prompt_tokens", 0)),
            output_tokens=int_or_zero(getattr(usage, "completion_tokens", 0)),
        )

    def _error(self, exc: BaseException, request: CompletionRequest) -> ProviderError:
        return map_openai_error(exc, self.id, timeout_s=request.timeout_s, secret=self._api_key)


class _StreamedChat:
    """Folds chat.completion.chunk objects into one answer: text deltas and usage."""

    def __init__(self, provider_id: str, model: str) -> None:
        self._provider_id = provider_id
        self._parts: list[str] = []
        self._model = model
        self._input_tokens = 0
        self._output_tokens = 0
        self._saw_choices = False

    def add(self, chunk: object) -> list[str]:
        """Take one chunk; return its text deltas (one per choice that has text)."""
        self._model = str_or(getattr(chunk, "model", None), self._model)
        usage = getattr(chunk, "usage", None)
        if usage is not None:  # the last chunk, with include_usage; its choices are empty
            self._input_tokens = int_or_zero(getattr(usage, "prompt_tokens", 0))
            self._output_tokens = int_or_zero(getattr(usage, "completion_tokens", 0))
        choices = getattr(chunk, "choices", None)
        if not isinstance(choices, list):
            raise bad_response(self._provider_id, "stream chunk without 'choices'")
        self._saw_choices = self._saw_choices or bool(choices)
        texts = [getattr(getattr(choice, "delta", None), "content", None) for choice in choices]
        found = [text for text in texts if isinstance(text, str) and text]
        self._parts.extend(found)
        return found

    def completion(self) -> Completion:
        if not self._saw_choices:
            raise bad_response(self._provider_id, "stream ended without any choices")
        text = "".join(self._parts)
        return Completion(text, self._model, self._input_tokens, self._output_tokens)
