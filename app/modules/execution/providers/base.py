"""The provider protocol every text model backend implements (DESIGN.md §7)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str
    system: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float | None = None  # bounds one attempt; the engine owns retries


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


DeltaCallback = Callable[[str], Awaitable[None]]


class ProviderError(Exception):
    """A provider call that failed. `transient` errors (429, 5xx, connection, timeout) are
    retried by the engine; the others fail the node at once with `code`."""

    def __init__(self, code: str, message: str, *, transient: bool, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.status = status


@runtime_checkable
class TextProvider(Protocol):
    id: str

    async def complete(self, request: CompletionRequest) -> Completion:
        """One request, the whole answer at once."""
        ...

    async def stream(self, request: CompletionRequest, on_delta: DeltaCallback) -> Completion:
        """One streaming request: `on_delta` gets each text delta as it arrives; the returned
        Completion holds the whole text (the deltas concatenated) and the usage."""
        ...
