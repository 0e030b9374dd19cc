"""Smoke test of the benchmark harness: `scripts/bench --quick` runs every part at tiny sizes
and writes its markdown table. It asserts nothing about timings (those belong in
docs/BENCHMARKS.md, measured by a full `scripts/bench`).

It runs in the normal suite and is bounded to 240 s (parts 6 and 7 start `scripts/dev` once
per database each). The PostgreSQL parts use the suite's
server (TEST_POSTGRES_URL) in cascade_bench_* databases and are skipped by the harness (not
failed) when it is unreachable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from scripts.benchmarks.common import postgres_cpu_seconds
from tests.conftest import ROOT, TEST_POSTGRES_URL

PARTS = ("1. Engine overhead per node", "2. Level parallelism", "3. Event log throughput",
         "4. Runs per second over HTTP", "5. Tunnel fan-out",
         "6. The load users see: tunnels and REST runs", "7. Event loop lag during a login burst")


def test_bench_quick_runs_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if k != "CASCADE_BENCH_COMMAND"}
    result = subprocess.run(
        [sys.executable, "-m", "scripts.benchmarks", "--quick", "--out", str(out),
         "--pg-url", TEST_POSTGRES_URL],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Cascade benchmarks")
    assert "--quick" in text  # the exact command is recorded
    assert "**Machine**" in text and "**Versions**" in text
    assert re.search(r"\*\*CPU speed\*\*: .* at the start \d+\.\d ms, at the end \d+\.\d ms",
                     text)
    for title in PARTS:
        assert f"## {title}" in text, title
    # The engine table, with its header row and one row per shape.
    assert "| shape | nodes | edges | (a) floor µs/node |" in text
    for shape in ("chain", "fan-out", "layered", "random DAG"):
        assert f"| {shape}" in text, shape
    if postgres_cpu_seconds() is not None:  # PostgreSQL runs on this machine
        assert "(c) PostgreSQL: the server's CPU µs/node" in text
    # The load part: a row per database (PostgreSQL when reachable), runs that never ended
    # counted, and its targets; the login burst's lag with its target.
    assert "| database | completed runs/s | p50 ms | p99 ms | never ended |" in text
    assert "| SQLite |" in text
    assert "two-node runs/s on SQLite as users load it" in text
    assert "event loop lag during" in text and "(SQLite, p99 of ping → pong" in text
    assert "(b) ≤ 2× the events floor (e)" in text
    assert "## Targets" in text
    assert result.stdout.startswith("# Cascade benchmarks")  # the table is also printed
