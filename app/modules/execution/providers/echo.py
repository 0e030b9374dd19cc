"""`echo`: the deterministic, offline default provider (DESIGN.md §7).

It answers with the prompt unchanged, so a flow's output is predictable from its inputs and
every flow runs on a fresh machine without keys or network. Token counts are whitespace word
counts — not what a real tokenizer would say, but stable and cheap.
"""

from __future__ import annotations

import re

from app.modules.execution.providers.base import Completion, CompletionRequest, DeltaCallback

# A leading run of whitespace, or a word with the whitespace after it: the pieces concatenate
# back to the text exactly, which is what a stream consumer checks.
_PIECES = re.compile(r"\S+\s*|\s+")


def split_deltas(text: str) -> list[str]:
    """Cut `text` at whitespace boundaries, keeping the whitespace; `"".join(...) == text`."""
    return _PIECES.findall(text)


def count_words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


class EchoProvider:
    id = "echo"

    async def complete(self, request: CompletionRequest) -> Completion:
        return self._answer(request)

    async def stream(self, request: CompletionRequest, on_delta: DeltaCallback) -> Completion:
        completion = self._answer(request)
        for delta in split_deltas(completion.text):
            await on_delta(delta)
        return completion

    async def aclose(self) -> None:
        """Nothing to release; present so the factory can close every provider alike."""

    @staticmethod
    def _answer(request: CompletionRequest) -> Completion:
        return Completion(
            text=request.prompt,
            model=request.model,
            input_tokens=count_words(request.prompt, request.system),
            output_tokens=count_words(request.prompt),
        )
