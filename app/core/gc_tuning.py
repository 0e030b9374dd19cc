"""Garbage-collector settings for a long-running server, applied once start-up is done.

CPython starts a generation-0 collection every 700 net allocations, and every tenth one
escalates; each full collection walks every tracked object in the process — for this app tens
of thousands of modules, classes, SQLAlchemy and pydantic structures that live for its whole
life. Under load (a run allocates a few dicts and objects per event) that was a measurable share
of the engine's time. `gc.freeze()` moves everything alive after start-up into a permanent
generation the collector skips, and a larger generation-0 threshold makes collections rarer.
Reference counting still frees almost everything at once; only cycles wait for a collection.
"""

from __future__ import annotations

import gc


def tune_gc(*, freeze: bool, gen0_threshold: int) -> None:
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    if freeze:
        gc.collect()  # what is garbage now must not be frozen
        gc.freeze()
