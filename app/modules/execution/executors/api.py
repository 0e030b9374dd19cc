"""Executor declaration: the `@executor` mark, the context an executor receives, its output.

The decorator only *marks* a function with its `ExecutorSpec`; discovery
(`app.core.di.discovery`) collects the marks into the registry, so importing a plugin module
has no side effect on global state.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.di.discovery import EXECUTOR_MARK

if TYPE_CHECKING:
    from app.modules.execution.providers.base import Completion, TextProvider

PortKind = Literal["text", "adapter"]
ApiCall = Literal["never", "always", "conditional"]

_MARK = EXECUTOR_MARK


@dataclass(frozen=True)
class Port:
    """An input or output handle of a node type."""

    name: str
    kind: PortKind = "text"
    description: str = ""


class NodeOutput(BaseModel):
    """What an executor returns: text for text edges, data for adapter edges and the record."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdapterInput:
    """Data that arrived over an adapter edge (a persona, a scene)."""

    source_node_id: str
    source_type: str
    data: Mapping[str, Any]
    text: str | None = None


@dataclass(frozen=True, slots=True)
class NodeInputs:
    """Upstream outputs by source node id, split by edge kind, in a stable order."""

    text: Mapping[str, str] = field(default_factory=dict)
    adapters: Mapping[str, AdapterInput] = field(default_factory=dict)


DeltaSink = Callable[[str], Awaitable[None]]


async def _discard_delta(_delta: str) -> None:
    return None


@dataclass(slots=True)  # one per node attempt: slots make it cheaper to build and read
class NodeExecutionContext:
    """Everything an executor may use. `config` is the validated instance of its config model."""

    node_id: str
    node_type: str
    run_id: str
    user_id: int
    config: Any
    inputs: NodeInputs
    provider: TextProvider
    model: str
    attempt: int = 1
    timeout_s: float | None = None
    _stream_sink: DeltaSink = _discard_delta
    # Token usage of every provider call this node made, summed for the completed event.
    usage: dict[str, int] = field(default_factory=lambda: {"input": 0, "output": 0})
    api_calls: int = 0

    @property
    def input_text(self) -> str:
        """The text inputs merged in their stable order, separated by a blank line."""
        return "\n\n".join(text for text in self.inputs.text.values() if text)

    async def stream(self, delta: str) -> None:
        """Push a token delta to the owner's tunnel (ephemeral; never persisted)."""
        if delta:
            await self._stream_sink(delta)

    async def complete(
        self, prompt: str, *, system: str = "", temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """Call the resolved provider with the resolved model; stream deltas when enabled."""
        from app.modules.execution.providers.base import CompletionRequest

        request = CompletionRequest(
            model=self.model, system=system, prompt=prompt, temperature=temperature,
            max_tokens=max_tokens, timeout_s=self.timeout_s,
        )
        result: Completion
        if self._stream_sink is _discard_delta:
            result = await self.provider.complete(request)
        else:
            result = await self.provider.stream(request, self.stream)
        self.api_calls += 1
        self.usage["input"] += result.input_tokens
        self.usage["output"] += result.output_tokens
        return result.text


ExecuteFn = Callable[[NodeExecutionContext], Awaitable[NodeOutput]]


class _NoConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")


@dataclass(frozen=True)
class ExecutorSpec:
    """One node type: its function and everything the catalog says about it."""

    type: str
    execute: ExecuteFn
    config_model: builtins.type[BaseModel]
    category: str
    description: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    output_schema: Mapping[str, Any]
    api_call: ApiCall = "never"
    default_temperature: float | None = None
    name: str = ""
    origin: str = ""  # module that declared it, for error messages

    @property
    def display_name(self) -> str:
        return self.name or self.type

    def input_port(self, name: str | None) -> Port | None:
        return _find_port(self.inputs, name)

    def output_port(self, name: str | None) -> Port | None:
        return _find_port(self.outputs, name)


def _find_port(ports: tuple[Port, ...], name: str | None) -> Port | None:
    if name is None:
        return ports[0] if ports else None
    return next((port for port in ports if port.name == name), None)


DEFAULT_OUTPUT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": ["string", "null"]}, "data": {"type": "object"}},
}


def executor(
    type: str,
    *,
    config: builtins.type[BaseModel] | None = None,
    category: str = "General",
    description: str = "",
    name: str = "",
    inputs: tuple[Port, ...] = (Port("input", "text"),),
    outputs: tuple[Port, ...] = (Port("output", "text"),),
    output_schema: Mapping[str, Any] | None = None,
    api_call: ApiCall = "never",
    default_temperature: float | None = None,
) -> Callable[[ExecuteFn], ExecuteFn]:
    """Mark `async def fn(ctx) -> NodeOutput` as the executor of node type `type`."""

    def mark(fn: ExecuteFn) -> ExecuteFn:
        spec = ExecutorSpec(
            type=type, execute=fn, config_model=config or _NoConfig, category=category,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            inputs=tuple(inputs), outputs=tuple(outputs),
            output_schema=output_schema or DEFAULT_OUTPUT_SCHEMA, api_call=api_call,
            default_temperature=default_temperature, name=name,
            origin=getattr(fn, "__module__", ""),
        )
        setattr(fn, _MARK, spec)
        return fn

    return mark


def spec_of(obj: object) -> ExecutorSpec | None:
    """The spec an `@executor` mark attached to `obj`, if any."""
    spec = getattr(obj, _MARK, None)
    return spec if isinstance(spec, ExecutorSpec) else None


def as_specs(executors: Mapping[str, object]) -> dict[str, ExecutorSpec]:
    """Discovery's executors (app.core knows them only as `ExecutorMark`) as the
    ExecutorSpecs that `@executor` made; anything else stops the boot with its type."""
    specs: dict[str, ExecutorSpec] = {}
    for type_, spec in executors.items():
        if not isinstance(spec, ExecutorSpec):
            raise TypeError(f"executor {type_!r} is a {type(spec).__name__}, not an "
                            "ExecutorSpec made by @executor")
        specs[type_] = spec
    return specs
