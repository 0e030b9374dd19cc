"""The benchmark's node types, declared with the public plugin API (DESIGN.md §7).

They are not installed as a `cascade.executors` entry point (that would put them in every
app's catalog); `bench_registry()` merges this module into `discover_executors()` exactly the
way discovery merges a plugin module: every `@executor` mark found on the module, and a type
that already exists is an error naming both declarations.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from types import ModuleType

from pydantic import BaseModel, Field

from app.core.di.discovery import DiscoveryError, discover_executors
from app.modules.execution.executors.api import (
    ExecutorSpec,
    NodeExecutionContext,
    NodeOutput,
    as_specs,
    executor,
    spec_of,
)


@executor("noop", category="Benchmark", description="Does nothing; returns an empty output")
async def noop(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput()


class SleepConfig(BaseModel):
    seconds: float = Field(default=0.01, ge=0, le=10)


@executor("benchSleep", config=SleepConfig, category="Benchmark",
          description="Sleeps, then returns an empty output")
async def bench_sleep(ctx: NodeExecutionContext) -> NodeOutput:
    await asyncio.sleep(ctx.config.seconds)
    return NodeOutput()


def collect(module: ModuleType, into: dict[str, ExecutorSpec]) -> dict[str, ExecutorSpec]:
    """Add the module's `@executor` marks to `into` (discovery's rule for plugin modules)."""
    for _, obj in sorted(vars(module).items()):
        spec = spec_of(obj)
        if spec is None or into.get(spec.type) is spec:
            continue
        if spec.type in into:
            raise DiscoveryError(f"executor type {spec.type!r} is declared twice: by "
                                 f"{into[spec.type].origin} and by {spec.origin}")
        into[spec.type] = spec
    return into


def bench_registry() -> Mapping[str, ExecutorSpec]:
    """The real registry (in-tree executors and installed plugins) plus this module's."""
    return collect(sys.modules[__name__], as_specs(discover_executors()))
