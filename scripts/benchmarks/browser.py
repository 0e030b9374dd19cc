"""Part 8: the page in a browser (issue 12). A 1,000-node flow run from the page in Debian's
Chromium, against a real uvicorn subprocess on a throw-away SQLite file.

Measured in the page, on its own clock (performance.now()):
- arrival: when the last node event of the run reached the page's WebSocket (a listener added
  before the page's own handler, by an init script that wraps `WebSocket`);
- painted: when every node element shows `data-status="completed"` (a MutationObserver on
  the attribute), taken after the frame that contains it (requestAnimationFrame, then a task);
- the page's JS heap after the run, and its main thread's busy time from the click to the
  paint (Chrome DevTools Protocol `Performance.getMetrics`: JSHeapUsedSize, TaskDuration);
  the busy time is the page's whole cost of the run, less sensitive to a loaded machine than
  the latency, which is mostly the length of the last frames.
The harness polls the page on a timer (every 100 ms), not on every animation frame, so that
it adds little work of its own to the frames being measured.
Target: painted − arrival under 500 ms.

Shape: one initialPrompt feeding N − 1 textOutput nodes laid out in a grid (two levels, so
the run is about the page, not the engine's level count); the echo provider, token streaming on.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from scripts.benchmarks.common import Databases, Options, Section, fmt, median, progress

TARGET_MS = 500.0

_INSTRUMENT = """
(() => {
  const bench = { arrival: null, painted: null, expected: 0, status: new Map() };
  window.__cascadeBench = bench;
  const Native = window.WebSocket;
  class TimedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const data = typeof event.data === 'string' ? event.data : '';
        if (data.includes('"execution.node.')) bench.arrival = performance.now();
      });
    }
  }
  window.WebSocket = TimedWebSocket;
  const observer = new MutationObserver((mutations) => {
    if (!bench.expected || bench.painted !== null) return;
    for (const m of mutations) {
      const holder = m.target.closest && m.target.closest('[data-testid^="rf__node-"]');
      if (holder) bench.status.set(holder.dataset.testid, m.target.getAttribute('data-status'));
    }
    let done = 0;
    for (const s of bench.status.values()) if (s === 'completed') done++;
    if (done >= bench.expected) {
      requestAnimationFrame(() => setTimeout(() => { bench.painted = performance.now(); }, 0));
      bench.expected = 0;
    }
  });
  const start = () => observer.observe(document.documentElement,
      { subtree: true, attributes: true, attributeFilter: ['data-status'] });
  if (document.documentElement) start(); else addEventListener('DOMContentLoaded', start);
})();
"""


def wide_graph(n: int) -> dict[str, Any]:
    cols = 40
    nodes: list[dict[str, Any]] = [{"id": "root", "type": "initialPrompt",
                                    "position": {"x": 0, "y": -200},
                                    "data": {"prompt": "one word each"}}]
    edges: list[dict[str, Any]] = []
    for i in range(1, n):
        nodes.append({"id": f"out{i}", "type": "textOutput",
                      "position": {"x": 220 * ((i - 1) % cols), "y": 140 * ((i - 1) // cols)},
                      "data": {}})
        edges.append({"id": f"e{i}", "source": "root", "target": f"out{i}",
                      "sourceHandle": "output", "targetHandle": "input"})
    return {"nodes": nodes, "edges": edges, "viewport": {"x": 0, "y": 0, "zoom": 0.2}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


POLL_MS = 100
PAGE_TIMEOUT_MS = 120_000  # one expect() on a 1,000-node page, on 2 loaded cores


def _metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: float(m["value"]) for m in cdp.send("Performance.getMetrics")["metrics"]}


def _heap_mb(cdp: Any) -> float:
    return _metrics(cdp)["JSHeapUsedSize"] / 2**20


def _wait_run_end(page: Any, run_id: str, terminal: list[str]) -> str:
    """tests.browser.builder.wait_run_end, polling on a timer instead of every frame."""
    page.wait_for_function(
        """([id, terminal]) => { const b = document.querySelector('[data-testid="run-status"]');
               return b && b.getAttribute('data-run-id') === id &&
                      terminal.includes(b.getAttribute('data-status')); }""",
        arg=[run_id, terminal], timeout=300_000, polling=POLL_MS)
    return str(page.get_by_test_id("run-status").get_attribute("data-status"))


def _measure_sync(database_url: str, log: Path, n: int, rounds: int,
                  warmup: bool) -> dict[str, Any]:
    # Imported here: Playwright is a test extra; the other parts do not need it.
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.builder import (
        TERMINAL_RUN,
        Api,
        open_flow,
        seed_flow,
        sign_up,
        start_run,
        unique_person,
    )
    from tests.browser.chromium import launch
    from tests.browser.server import PageServer

    server = PageServer(database_url, _free_port(), log).start()
    results: dict[str, Any] = {"latency_ms": [], "heap_mb": [], "heap_gc_mb": [], "busy_ms": [],
                               "rendered": 0, "statuses": []}
    # Loading the 1,000-node page can take longer than expect()'s 5 s default under load.
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context(base_url=server.url,
                                          viewport={"width": 1400, "height": 900})
            context.set_default_timeout(120_000)
            context.add_init_script(_INSTRUMENT)
            page = context.new_page()
            person = unique_person("bench")
            sign_up(page, person)
            api = Api(server.url, person)
            flow_id = seed_flow(api, f"{n} nodes", wide_graph(n))
            api.close()
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            for round_no in range(0 if warmup else 1, rounds + 1):
                open_flow(page, flow_id)
                page.wait_for_function(
                    "(n) => document.querySelectorAll('[data-testid^=\"rf__node-\"]')"
                    ".length >= n", arg=n)
                rendered = int(page.evaluate(
                    "document.querySelectorAll('[data-testid^=\"rf__node-\"]').length"))
                page.evaluate("(n) => { const b = window.__cascadeBench; b.arrival = null;"
                              " b.painted = null; b.status.clear(); b.expected = n; }", rendered)
                busy_before = _metrics(cdp)["TaskDuration"]
                run_id = start_run(page)
                status = _wait_run_end(page, run_id, sorted(TERMINAL_RUN))
                page.wait_for_function("() => window.__cascadeBench.painted !== null",
                                       polling=POLL_MS)
                busy = (_metrics(cdp)["TaskDuration"] - busy_before) * 1000
                timing = page.evaluate("({arrival: window.__cascadeBench.arrival,"
                                       " painted: window.__cascadeBench.painted})")
                latency = float(timing["painted"]) - float(timing["arrival"])
                heap = _heap_mb(cdp)
                cdp.send("HeapProfiler.collectGarbage")
                heap_gc = _heap_mb(cdp)
                label = "warm-up" if round_no == 0 else f"round {round_no}"
                progress(f"  browser {label}: last event → last node painted {latency:.0f} ms, "
                         f"main thread busy {busy:.0f} ms, "
                         f"JS heap {heap:.1f} MiB ({heap_gc:.1f} MiB after a GC), "
                         f"{rendered} node elements, run {status}")
                if round_no == 0:
                    continue
                results["statuses"].append(status)
                results["latency_ms"].append(latency)
                results["busy_ms"].append(busy)
                results["heap_mb"].append(heap)
                results["heap_gc_mb"].append(heap_gc)
                results["rendered"] = rendered
            browser.close()
    finally:
        server.stop()
    return results


async def measure(options: Options, dbs: Databases) -> Section:
    section = Section("browser", "8. The page in a browser")
    from tests.browser.chromium import chromium_missing

    missing = chromium_missing()
    if missing is not None:
        section.skipped = missing
        return section
    n = 100 if options.quick else 1000
    rounds = 1 if options.quick else options.heavy_repeats
    url = await dbs.sqlite("browser")
    # Sync Playwright runs its own event loop: give it a thread of its own.
    results = await asyncio.to_thread(_measure_sync, url, dbs.tmp / "browser-uvicorn.log", n,
                                      rounds, options.warmup)
    latency = median(results["latency_ms"])
    section.headers = ["flow", "last event → last node painted", "main thread busy during the run",
                       "JS heap after the run", "after a GC", "node elements", "runs"]
    section.rows.append([f"{n} nodes (1 → {n - 1}), echo, token stream on",
                         f"{fmt(latency, 0)} ms", f"{fmt(median(results['busy_ms']), 0)} ms",
                         f"{fmt(median(results['heap_mb']))} MiB",
                         f"{fmt(median(results['heap_gc_mb']))} MiB", str(results["rendered"]),
                         ", ".join(results["statuses"])])
    section.targets.append((f"{n}-node run from the page: last event → last node painted "
                            f"< {TARGET_MS:.0f} ms", f"{fmt(latency, 0)} ms",
                            latency < TARGET_MS and set(results["statuses"]) == {"succeeded"}))
    section.notes += [
        f"Median of {rounds} run(s) {options.warm} in Debian's Chromium (headless) on the "
        "same machine as the server, the page reloaded before each; times on the page's own "
        "clock (performance.now()). Arrival is the last "
        "`execution.node.*` frame at the page's WebSocket; painted is the frame after every "
        "node element shows `data-status=\"completed\"`. Main thread busy is Chrome's TaskDuration "
        "from the click on Run to that paint (the page's whole work for the run; the run itself "
        "takes seconds, the server sharing the cores). The heap is Chrome's JSHeapUsedSize "
        "after the run, then after a forced garbage collection (HeapProfiler.collectGarbage). "
        f"The harness polls the page every {POLL_MS} ms (not every frame).",
    ]
    return section
