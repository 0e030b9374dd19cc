"""`--profile DIR`: where the engine's time goes, per shape and mode, with pyinstrument.

For each shape and each Cascade mode ((b) memory log, (c) SQLite / PostgreSQL log) it samples
PROFILE_RUNS runs in one session (single runs are noisy: one garbage collection or one
preemption lands in a random frame) and writes

* `<mode>-<shape>.txt`: the call tree; `<mode>-<shape>-flat.txt`: functions by self time;
* `summary.md`: for every shape and mode, self time by component (runner, bus and log,
  SQLAlchemy, driver, asyncio, the event loop's own C code, ...) and the top functions.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from scripts.benchmarks.common import progress
from scripts.benchmarks.shapes import Shape

PROFILE_RUNS = 3
TOP = 12

# (component, substrings of a file path); first match wins.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("runner (execution/runner.py, streaming, executor api)",
     ("app/modules/execution/runner.py", "app/modules/execution/streaming.py",
      "app/modules/execution/executors/", "app/modules/execution/config/")),
    ("state ops (execution/models.py)", ("app/modules/execution/models.py",)),
    ("event bus + log writer (app/core/bus)", ("app/core/bus/",)),
    ("events, subscribers, ws bridge", ("app/core/events/", "app/modules/realtime/",
                                        "app/core/ws/", "app/core/di/")),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("DB driver (asyncpg, aiosqlite)", ("asyncpg/", "aiosqlite/", "sqlite3/")),
    ("greenlet bridge", ("greenlet",)),
    ("json", ("json/",)),
    ("uuid", ("uuid.py",)),
    ("pydantic, copy", ("pydantic", "copy.py")),
    # Samples whose Python stack is only the loop's `run`: the loop idle on I/O (waiting
    # for the database) or busy in uvloop's own C code (callbacks, task switches).
    ("event loop: idle on I/O or in uvloop C code", ("asyncio/runners.py", "uvloop",
                                                    "<thread>")),
    ("asyncio library (tasks, futures, queues, timeouts, locks)", ("asyncio/",)),
    ("benchmark executor", ("scripts/benchmarks/",)),
]


def component(path: str) -> str:
    for name, needles in COMPONENTS:
        if any(needle in path for needle in needles):
            return name
    return "other"


def _self_times(frame: Any, parent: tuple[str, str] = ("", "")
                ) -> Iterator[tuple[str, str, float]]:
    """(function label, file path, self time) for every frame of a pyinstrument tree.
    Synthetic `[self]` leaves count for their parent; built-ins and generated code
    (`<built-in>`, `<string>`: dataclass `__init__`s) count for their caller's component."""
    path = frame.file_path or ""
    if frame.is_synthetic_leaf or frame.function == "[self]":
        label, path = parent
    elif not path or path.startswith("<"):
        label, path = f"{frame.function} ({path or '?'}, from {parent[0]})", parent[1]
    else:
        label = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    children = list(frame.children)
    own = frame.time - sum(child.time for child in children)
    if own > 0:
        yield label, path, own
    for child in children:
        yield from _self_times(child, (label, path))


def _largest(values: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])


def summarize(session: Any, title: str) -> list[str]:
    root = session.root_frame()
    if root is None:
        return [f"### {title}", "", "no samples", ""]
    by_component: dict[str, float] = {}
    by_function: dict[str, float] = {}
    for label, path, seconds in _self_times(root):
        name = component(path)
        by_component[name] = by_component.get(name, 0.0) + seconds
        by_function[label] = by_function.get(label, 0.0) + seconds
    total = sum(by_component.values()) or 1.0
    lines = [f"### {title}", "",
             f"{session.duration:.2f} s wall, {session.cpu_time:.2f} s CPU over "
             f"{PROFILE_RUNS} runs (sampled)", "", "| component | share of samples |",
             "|---|---|"]
    lines += [f"| {name} | {t / total * 100:.1f}% |" for name, t in _largest(by_component)]
    lines += ["", "| top functions (self time) | share |", "|---|---|"]
    lines += [f"| `{name}` | {t / total * 100:.1f}% |"
              for name, t in _largest(by_function)[:TOP]]
    return [*lines, ""]


async def profile_engine(out_dir: Path, shapes: list[Shape], modes: Mapping[str, Any],
                         parse: Callable[[Shape, Any], Any]) -> None:
    try:
        from pyinstrument import Profiler
        from pyinstrument.renderers import ConsoleRenderer
    except ImportError:
        progress("  pyinstrument is not installed; no profiles")
        return
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    summary = ["# Where the engine's time goes", "",
               "Self time by component and by function, sampled by pyinstrument over "
               f"{PROFILE_RUNS} runs per shape and mode. Written by `scripts/bench --profile`.",
               ""]
    for mode in modes.values():
        mode.bus.start()
    try:
        for shape in shapes:
            summary += [f"## {shape.name}", ""]
            for key, mode in modes.items():
                graph = parse(shape, mode.specs)
                runners = [await mode.prepare(graph) for _ in range(PROFILE_RUNS)]
                profiler = Profiler(interval=0.0005, async_mode="disabled")
                for runner in runners:
                    gc.collect()  # as the timed runs do; samples add up across start/stop
                    profiler.start()
                    await runner.run()
                    profiler.stop()
                slug = f"{key}-{shape.name.split()[0].replace('-', '')}"
                tree = profiler.output(ConsoleRenderer(unicode=True, color=False))
                flat = profiler.output(ConsoleRenderer(unicode=True, color=False, flat=True))
                await asyncio.to_thread((out_dir / f"{slug}.txt").write_text, tree)
                await asyncio.to_thread((out_dir / f"{slug}-flat.txt").write_text, flat)
                if profiler.last_session is not None:
                    summary += summarize(profiler.last_session, f"{shape.name}: {key}")
    finally:
        for mode in modes.values():
            await mode.bus.stop()
    await asyncio.to_thread((out_dir / "summary.md").write_text, "\n".join(summary))
    progress(f"  profiles written to {out_dir} (summary.md)")
