"""Part 2: level parallelism. Layered 50 × 20, every node sleeps 10 ms: ideally 50 levels ×
10 ms = 0.5 s. Reported: the run's wall time and its overhead over the ideal, with the
in-memory log and with the real log on PostgreSQL (and SQLite).

The per-run concurrency limit is set to the level width (20): with the default 16 a level
would run in two waves and the ideal itself would double.
"""

from __future__ import annotations

import asyncio

from scripts.benchmarks.common import (
    Databases,
    Options,
    Section,
    Store,
    fmt,
    median,
    progress,
    timed,
)
from scripts.benchmarks.engine import CascadeMode, make_bus, parse_valid
from scripts.benchmarks.nodes import bench_registry
from scripts.benchmarks.shapes import layered

SLEEP_S = 0.010
FLOOR = "floor: bare gather of sleeps"


async def sleep_floor(levels: int, width: int) -> float:
    """The same levels as bare `asyncio.gather`s of `asyncio.sleep(SLEEP_S)`: what the event
    loop's timers alone cost over the ideal."""
    async def go() -> None:
        for _ in range(levels):
            await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(width)))

    return await timed(go)


async def measure(options: Options, dbs: Databases) -> Section:
    from app.modules.execution.runner import RunnerLimits

    section = Section("parallelism", "2. Level parallelism")
    levels, width = (5, 4) if options.quick else (50, 20)
    shape = layered(levels, width).with_type("benchSleep", {"seconds": SLEEP_S})
    ideal = levels * SLEEP_S
    specs = bench_registry()
    graph = parse_valid(shape, specs)
    limits = RunnerLimits(max_concurrent_nodes=width)
    stores: list[Store] = []
    modes = [CascadeMode("Cascade, in-memory log", make_bus(None), specs, limits=limits)]
    try:
        if await dbs.pg_available():
            pg = Store(await dbs.postgres("parallel"))
            stores.append(pg)
            modes.append(CascadeMode("Cascade, PostgreSQL log", make_bus(pg), specs, pg,
                                     (await pg.add_users(1))[0], limits=limits))
        sqlite = Store(await dbs.sqlite("parallel"))
        stores.append(sqlite)
        modes.append(CascadeMode("Cascade, SQLite log", make_bus(sqlite), specs, sqlite,
                                 (await sqlite.add_users(1))[0], limits=limits))
        for mode in modes:
            mode.bus.start()
        times: dict[str, list[float]] = {FLOOR: []}
        times.update({m.name: [] for m in modes})
        for mode in modes if options.warmup else ():  # warm-up
            await mode.run(graph)
        for _ in range(options.repeats):
            times[FLOOR].append(await sleep_floor(levels, width))
            for mode in modes:
                times[mode.name].append(await mode.run(graph))
        for mode in modes:
            await mode.bus.stop()
    finally:
        for store in stores:
            await store.close()

    section.headers = ["run", "shape", "ideal s", "median s", "overhead over ideal",
                       "overhead over the floor"]
    floor = median(times[FLOOR])
    for name, values in times.items():
        t = median(values)
        overhead = (t - ideal) / ideal
        section.rows.append([name, f"{levels} × {width}, {SLEEP_S * 1000:g} ms nodes",
                             fmt(ideal, 3), fmt(t, 3), f"{overhead * 100:.1f}%",
                             "—" if name == FLOOR else f"{(t - floor) / ideal * 100:.1f}%"])
        if name in ("Cascade, PostgreSQL log", "Cascade, in-memory log"):
            section.targets.append((f"level parallelism overhead < 15% of ideal ({name})",
                                    f"{overhead * 100:.1f}%", overhead < 0.15))
        progress(f"  parallelism {name}: {t:.3f} s ({overhead * 100:.1f}%)")
    section.notes += [
        f"Median of {options.repeats} runs {options.warm}; `RunnerLimits(max_concurrent_nodes"
        f"={width})`, everything else default. The ideal is levels × sleep; the overhead "
        "includes timer granularity of `asyncio.sleep` and the level barrier; the floor "
        "row shows how much of it the event loop alone costs (uvloop's timers have 1 ms "
        "resolution).",
    ]
    return section
