"""The parsed graph and the parser of React Flow `toObject()` exports.

Parsing is lenient: every structural defect becomes an `invalid_graph` problem and the broken
piece is left out (or kept with a neutral value), so validation can go on and report everything
else in the same answer instead of stopping at the first bad entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from app.modules.execution.graph.problems import (
    DUPLICATE_NODE_ID,
    INVALID_GRAPH,
    GraphProblem,
)


@dataclass(frozen=True)
class GraphNode:
    """A node: `type` is the executor key, `index` its position in the input list."""

    id: str
    type: str
    data: dict[str, Any]
    index: int


@dataclass(frozen=True)
class GraphEdge:
    """A directed edge. Handles name ports; None means the node's default handle."""

    id: str
    source: str
    target: str
    source_handle: str | None = None
    target_handle: str | None = None


@dataclass(frozen=True)
class Graph:
    """A parsed graph. Treat it as read-only: the adjacency is computed once and cached.

    `nodes` keeps the input order (the builder's order), which every "stable order" in the
    engine relies on. `edges` may reference missing nodes (validation reports those); the
    adjacency ignores such edges and collapses duplicate edges between the same two nodes.
    """

    nodes: dict[str, GraphNode]
    edges: list[GraphEdge] = field(default_factory=list)

    @cached_property
    def _adjacency(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        # dict-as-ordered-set: O(1) dedupe while keeping the edge order.
        parents: dict[str, dict[str, None]] = {node_id: {} for node_id in self.nodes}
        children: dict[str, dict[str, None]] = {node_id: {} for node_id in self.nodes}
        for edge in self.edges:
            if edge.source in children and edge.target in parents:
                children[edge.source][edge.target] = None
                parents[edge.target][edge.source] = None
        return (
            {node_id: tuple(ids) for node_id, ids in parents.items()},
            {node_id: tuple(ids) for node_id, ids in children.items()},
        )

    @property
    def parents_of(self) -> dict[str, tuple[str, ...]]:
        """Direct parents of every node (deduplicated, in edge order)."""
        return self._adjacency[0]

    @property
    def children_of(self) -> dict[str, tuple[str, ...]]:
        """Direct children of every node (deduplicated, in edge order)."""
        return self._adjacency[1]


@dataclass(frozen=True)
class ParseResult:
    """A best-effort graph plus the structural problems found while building it.

    `broken_node_ids` are nodes kept only so edges to them are not reported as dangling; their
    type or data was unusable, so type and config checks skip them (already reported).
    """

    graph: Graph
    problems: list[GraphProblem]
    broken_node_ids: frozenset[str] = frozenset()


class GraphInvalidError(ValueError):
    """Raised by `parse_graph` when the input is not a usable graph; carries the problems."""

    def __init__(self, problems: list[GraphProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(problem.message for problem in problems))


def parse_graph(raw: Mapping[str, Any]) -> Graph:
    """Parse a React Flow export; raise `GraphInvalidError` on structural problems.

    Duplicate node ids are not structural (the first occurrence wins); `validate_graph`
    reports them. Callers that want every problem use `parse_graph_lenient`.
    """
    result = parse_graph_lenient(raw)
    structural = [problem for problem in result.problems if problem.code == INVALID_GRAPH]
    if structural:
        raise GraphInvalidError(structural)
    return result.graph


def parse_graph_lenient(raw: object) -> ParseResult:
    """Parse whatever arrived; never raises. Unknown keys (React Flow's UI state) are ignored."""
    problems: list[GraphProblem] = []
    if not isinstance(raw, Mapping):
        problems.append(_invalid(f"graph must be an object, got {_kind(raw)}"))
        return ParseResult(Graph(nodes={}, edges=[]), problems)

    raw_nodes = _list_field(raw, "nodes", problems)
    raw_edges = _list_field(raw, "edges", problems)
    nodes, broken = _parse_nodes(raw_nodes, problems)
    edges = _parse_edges(raw_edges, problems)
    return ParseResult(Graph(nodes=nodes, edges=edges), problems, frozenset(broken))


def _list_field(raw: Mapping[str, Any], key: str, problems: list[GraphProblem]) -> list[Any]:
    # Absent or null means empty: a brand-new flow may be saved as `{}`.
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(_invalid(f"'{key}' must be a list, got {_kind(value)}"))
        return []
    return value


def _parse_nodes(
    raw_nodes: list[Any], problems: list[GraphProblem]
) -> tuple[dict[str, GraphNode], set[str]]:
    nodes: dict[str, GraphNode] = {}
    broken: set[str] = set()
    for index, raw_node in enumerate(raw_nodes):
        if not _is_mapping(raw_node):
            problems.append(_invalid(f"nodes[{index}] must be an object, got {_kind(raw_node)}"))
            continue
        node_id = raw_node.get("id")
        if not isinstance(node_id, str) or not node_id:
            problems.append(_invalid(f"nodes[{index}] has no string 'id'"))
            continue
        if node_id in nodes:
            problems.append(
                GraphProblem(
                    DUPLICATE_NODE_ID,
                    f"node id '{node_id}' is used more than once (nodes[{index}])",
                    node_id=node_id,
                )
            )
            continue
        node_type = raw_node.get("type")
        if not isinstance(node_type, str) or not node_type:
            problems.append(_invalid(f"node '{node_id}' has no string 'type'", node_id=node_id))
            node_type = ""
            broken.add(node_id)
        data = raw_node.get("data")
        if data is None:
            data = {}
        elif not _is_mapping(data):
            problems.append(
                _invalid(f"node '{node_id}': 'data' must be an object", node_id=node_id)
            )
            data = {}
            broken.add(node_id)
        nodes[node_id] = GraphNode(id=node_id, type=node_type, data=dict(data), index=index)
    return nodes, broken


def _parse_edges(raw_edges: list[Any], problems: list[GraphProblem]) -> list[GraphEdge]:
    # Plain checks instead of generic helpers: this loop runs for every one of 20,000 edges.
    edges: list[GraphEdge] = []
    used_ids: set[str] = set()
    for index, raw_edge in enumerate(raw_edges):
        if not _is_mapping(raw_edge):
            problems.append(_invalid(f"edges[{index}] must be an object, got {_kind(raw_edge)}"))
            continue
        edge_id = raw_edge.get("id")
        if edge_id is not None and (not isinstance(edge_id, str) or not edge_id):
            problems.append(_invalid(f"edges[{index}]: 'id' must be a non-empty string"))
            continue
        source, target = raw_edge.get("source"), raw_edge.get("target")
        source_handle, target_handle = raw_edge.get("sourceHandle"), raw_edge.get("targetHandle")
        if not (isinstance(source, str) and source and isinstance(target, str) and target):
            problems.append(_invalid(
                f"{_edge_label(edge_id, index)} needs string 'source' and 'target'",
                edge_id=edge_id))
            continue
        if not (_is_optional_str(source_handle) and _is_optional_str(target_handle)):
            problems.append(_invalid(
                f"{_edge_label(edge_id, index)}: handles must be strings", edge_id=edge_id))
            continue
        edge_id = _unique_id(edge_id or f"{source}->{target}", index, used_ids)
        edges.append(GraphEdge(edge_id, source, target, source_handle, target_handle))
    return edges


def _edge_label(edge_id: str | None, index: int) -> str:
    return f"edge '{edge_id}'" if edge_id else f"edges[{index}]"


def _is_optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_mapping(value: object) -> bool:
    # `dict` first: the ABC check behind Mapping is several times slower and JSON gives dicts.
    return isinstance(value, dict) or isinstance(value, Mapping)


def _unique_id(edge_id: str, index: int, used: set[str]) -> str:
    # Edge ids key the edge-kind map the runner uses, so they must be unique even when the
    # input repeats one (or several id-less edges join the same two nodes).
    candidate = edge_id
    while candidate in used:
        candidate = f"{edge_id}#{index}" if candidate == edge_id else f"{candidate}#"
    used.add(candidate)
    return candidate


def _invalid(
    message: str, *, node_id: str | None = None, edge_id: str | None = None
) -> GraphProblem:
    return GraphProblem(INVALID_GRAPH, message, node_id=node_id, edge_id=edge_id)


def _kind(value: object) -> str:
    # JSON vocabulary in messages: the client sent JSON, not Python objects.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__
