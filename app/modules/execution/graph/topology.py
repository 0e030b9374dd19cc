"""Order and reachability on a parsed graph. Everything is iterative and O(V + E).

Iterative on purpose: a 5,000-node chain would blow Python's recursion limit in a recursive DFS.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from app.modules.execution.graph.model import Graph


class CycleError(ValueError):
    """The graph is not a DAG; `cycle` is one cycle's nodes in edge order."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"graph has a cycle: {format_cycle(cycle)}")


def format_cycle(cycle: list[str]) -> str:
    """`a → b → c → a`: closing the loop makes the cycle readable at a glance."""
    return " → ".join([*cycle, cycle[0]]) if cycle else ""


def parents(graph: Graph, node_id: str) -> tuple[str, ...]:
    """Direct parents of `node_id` (empty for an unknown id)."""
    return graph.parents_of.get(node_id, ())


def children(graph: Graph, node_id: str) -> tuple[str, ...]:
    """Direct children of `node_id` (empty for an unknown id)."""
    return graph.children_of.get(node_id, ())


def group_by_levels(graph: Graph) -> list[list[str]]:
    """Kahn's topological generations; within a level, nodes keep the input order.

    A node's level is 1 + the highest level of its parents, so every edge goes from a lower
    level to a higher one and a level can run concurrently. Raises `CycleError` otherwise.
    """
    parents_of, children_of = graph.parents_of, graph.children_of
    waiting = {node_id: len(parents_of[node_id]) for node_id in graph.nodes}
    frontier = [node_id for node_id, count in waiting.items() if count == 0]
    level_of = dict.fromkeys(frontier, 0)
    depth = 0
    while frontier:
        depth += 1
        ready: list[str] = []
        for node_id in frontier:
            for child in children_of[node_id]:
                waiting[child] -= 1
                if waiting[child] == 0:  # its last parent is on this level
                    level_of[child] = depth
                    ready.append(child)
        frontier = ready

    if len(level_of) < len(graph.nodes):
        cycle = find_cycle(graph)
        raise CycleError(cycle or [])
    # Bucketing in input order (instead of sorting each level) keeps the order stable in O(V).
    levels: list[list[str]] = [[] for _ in range(depth)]
    for node_id in graph.nodes:
        levels[level_of[node_id]].append(node_id)
    return levels


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle's nodes in edge order (`[a, b, c]` for a → b → c → a), or None for a DAG.

    Iterative DFS from each unvisited node in input order, so the answer is deterministic.
    """
    children_of = graph.children_of
    finished: set[str] = set()
    for root in graph.nodes:
        if root in finished:
            continue
        # `path` is the current DFS path; `on_path` maps a node to its position in it.
        path = [root]
        on_path = {root: 0}
        pending = [iter(children_of[root])]
        while pending:
            child = next(pending[-1], None)
            if child is None:
                done = path.pop()
                del on_path[done]
                finished.add(done)
                pending.pop()
            elif child in on_path:
                return path[on_path[child]:]
            elif child not in finished:
                on_path[child] = len(path)
                path.append(child)
                pending.append(iter(children_of[child]))
    return None


def upstream(graph: Graph, node_ids: Iterable[str]) -> set[str]:
    """All ancestors of `node_ids`; a given node is included only if another one reaches it."""
    return _reach(graph.parents_of, node_ids)


def downstream(graph: Graph, node_ids: Iterable[str]) -> set[str]:
    """All descendants of `node_ids`; a given node is included only if another one reaches it."""
    return _reach(graph.children_of, node_ids)


def _reach(neighbours: Mapping[str, tuple[str, ...]], start: Iterable[str]) -> set[str]:
    # Seed with the neighbours, not the start nodes, so a start node counts only when reached.
    # Unknown ids are ignored: the caller decides whether an unknown id is an error.
    seen: set[str] = set()
    queue: deque[str] = deque()
    for node_id in start:
        for neighbour in neighbours.get(node_id, ()):
            if neighbour not in seen:
                seen.add(neighbour)
                queue.append(neighbour)
    while queue:
        for neighbour in neighbours[queue.popleft()]:
            if neighbour not in seen:
                seen.add(neighbour)
                queue.append(neighbour)
    return seen
