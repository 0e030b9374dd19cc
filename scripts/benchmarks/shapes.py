"""The benchmark graph shapes: deterministic (seeded), as React Flow JSON of `noop` nodes.

* chain:   n0 → n1 → … → n(N-1)
* fan-out: src → N middles → sink
* layered: L levels of W nodes; every node past the first level has two distinct parents on
           the level above
* random:  a random DAG of N nodes, each node past the first few with 3 parents drawn from the
           nodes before it (so about 3 edges per node)
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

SEED = 20240611
NOOP = "noop"


@dataclass(frozen=True)
class Shape:
    name: str
    nodes: list[str]
    edges: list[tuple[str, str]]
    node_type: str = NOOP
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.nodes)

    def as_flow(self) -> dict[str, Any]:
        """The graph JSON a builder would send (nodes, edges)."""
        return {
            "nodes": [{"id": n, "type": self.node_type, "data": dict(self.data)}
                      for n in self.nodes],
            "edges": [{"id": f"e{i}", "source": s, "target": t}
                      for i, (s, t) in enumerate(self.edges)],
        }

    def parents(self) -> dict[str, list[str]]:
        parents: dict[str, list[str]] = {n: [] for n in self.nodes}
        for source, target in self.edges:
            parents[target].append(source)
        return parents

    def levels(self) -> list[list[str]]:
        """Kahn generations, computed here independently of the engine (for the floor)."""
        parents = self.parents()
        level: dict[str, int] = {}
        for node in self.nodes:  # nodes are listed in a topological order
            level[node] = 1 + max((level[p] for p in parents[node]), default=-1)
        out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for node in self.nodes:
            out[level[node]].append(node)
        return out

    def with_type(self, node_type: str, data: dict[str, Any]) -> Shape:
        return Shape(self.name, self.nodes, self.edges, node_type, dict(data))


def chain(n: int) -> Shape:
    nodes = [f"n{i}" for i in range(n)]
    return Shape(f"chain {n:,}", nodes, list(itertools.pairwise(nodes)))


def fan_out(width: int) -> Shape:
    middles = [f"m{i}" for i in range(width)]
    edges = [("src", m) for m in middles] + [(m, "sink") for m in middles]
    return Shape(f"fan-out 1 → {width:,} → 1", ["src", *middles, "sink"], edges)


def layered(levels: int, width: int, parents: int = 2, seed: int = SEED) -> Shape:
    rng = random.Random(seed)
    grid = [[f"l{i}_{j}" for j in range(width)] for i in range(levels)]
    edges = []
    for above, level in itertools.pairwise(grid):
        for node in level:
            for parent in rng.sample(above, min(parents, len(above))):
                edges.append((parent, node))
    return Shape(f"layered {levels} × {width}", [n for level in grid for n in level], edges)


def random_dag(n: int, parents: int = 3, seed: int = SEED) -> Shape:
    rng = random.Random(seed)
    nodes = [f"r{i}" for i in range(n)]
    edges = []
    for i in range(1, n):
        for p in rng.sample(range(i), min(parents, i)):
            edges.append((nodes[p], nodes[i]))
    return Shape(f"random DAG {n:,}", nodes, edges)


def engine_shapes(quick: bool) -> list[Shape]:
    if quick:
        return [chain(40), fan_out(40), layered(5, 8), random_dag(60)]
    return [chain(1000), fan_out(1000), layered(50, 20), random_dag(2000)]
