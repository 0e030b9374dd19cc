from __future__ import annotations

from scripts.benchmarks.common import Databases, Options, Section


async def measure(options: Options, dbs: Databases) -> Section:
    return Section("x", "x", skipped="not yet")
