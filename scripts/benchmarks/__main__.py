"""`python -m scripts.benchmarks [--quick] [--only PARTS] [--out PATH] [--profile DIR]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from app.core.config import Settings
from app.core.gc_tuning import tune_gc
from scripts.benchmarks import browser as browser_part
from scripts.benchmarks import (
    engine,
    eventlog,
    http_runs,
    load,
    parallelism,
    queue,
    report,
    tunnels,
)
from scripts.benchmarks.common import DEFAULT_PG_URL, ROOT, Databases, Options, Section

Part = Callable[[Options, Databases], Awaitable[Section]]
PARTS: dict[str, tuple[str, Part]] = {
    "engine": ("1. Engine overhead per node", engine.measure),
    "parallelism": ("2. Level parallelism", parallelism.measure),
    "eventlog": ("3. Event log throughput", eventlog.measure),
    "http": ("4. Runs per second over HTTP", http_runs.measure),
    "tunnels": ("5. Tunnel fan-out", tunnels.measure),
    "load": ("6. The load users see: tunnels and REST runs", load.measure),
    "logins": ("7. Event loop lag during a login burst", load.measure_logins),
    "browser": ("8. The page in a browser", browser_part.measure),
    "queue": ("9. Queue mode: API replicas and workers", queue.measure),
}
# Wall-clock bound of one part (each part also bounds its own loops).
PART_TIMEOUT_S = {"quick": 120.0, "full": 1800.0}


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 1 repeat; still writes the table")
    parser.add_argument("--only", default="",
                        help=f"comma-separated parts: {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md",
                        help="where to write the markdown table (default docs/BENCHMARKS.md)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL,
                        help="PostgreSQL server (admin URL) for the cascade_bench_* databases")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="also profile one run per shape of (b) and (c) with pyinstrument")
    parser.add_argument("--no-langgraph", action="store_true",
                        help="leave out (d) even when langgraph is installed (faster)")
    args = parser.parse_args(argv)
    only = frozenset(p.strip() for p in args.only.split(",") if p.strip())
    unknown = only - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(PARTS)}")
    command = os.environ.get("CASCADE_BENCH_COMMAND") or shlex.join(
        ["python", "-m", "scripts.benchmarks", *argv])
    return Options(quick=args.quick, only=only, out=args.out, pg_url=args.pg_url,
                   profile_dir=args.profile, langgraph=not args.no_langgraph,
                   repeats=1 if args.quick else 7,
                   heavy_repeats=1 if args.quick else 3, warmup=not args.quick,
                   command=command)


async def run(options: Options) -> int:
    started = time.monotonic()
    load_at_start, speed_at_start = report.load_average(), report.cpu_speed()
    dbs = Databases(options.pg_url)
    sections: list[Section] = []
    failed = 0
    timeout = PART_TIMEOUT_S["quick" if options.quick else "full"]
    # The app tunes the garbage collector once it has started (GC_* settings); the parts
    # that run Cascade in this process get the same, with the defaults.
    tune_gc(freeze=Settings.model_fields["GC_FREEZE_AFTER_STARTUP"].default,
            gen0_threshold=Settings.model_fields["GC_GEN0_THRESHOLD"].default)
    try:
        await dbs.pg_available()
        for key, (title, part) in PARTS.items():
            if not options.wants(key):
                continue
            print(f"== {title}", file=sys.stderr, flush=True)
            part_started = time.monotonic()
            try:
                section = await asyncio.wait_for(part(options, dbs), timeout)
            except Exception as exc:
                failed += 1
                traceback.print_exc()
                section = Section(key, title, skipped=f"failed: {type(exc).__name__}: {exc}")
            print(f"   ({time.monotonic() - part_started:.1f} s)", file=sys.stderr, flush=True)
            sections.append(section)
    finally:
        await dbs.close()
    text = report.render(options, sections, dbs.pg_version, time.monotonic() - started,
                         load_at_start, speed_at_start)
    print(text)
    report.write(options.out, text)
    return 1 if failed else 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed, as uvicorn's `--loop auto` picks it in production."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(run(options))


if __name__ == "__main__":
    raise SystemExit(main())
