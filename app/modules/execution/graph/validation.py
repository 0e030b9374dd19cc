"""`validate_graph`: every problem of a graph in one answer (DESIGN.md §6 Validation)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from app.modules.execution.executors.api import ExecutorSpec
from app.modules.execution.graph.config import validate_config
from app.modules.execution.graph.model import Graph, parse_graph_lenient
from app.modules.execution.graph.problems import (
    CYCLE,
    DANGLING_EDGE,
    GRAPH_TOO_LARGE,
    INVALID_GRAPH,
    PROVIDER_MISSING_KEY,
    SELF_LOOP,
    TOO_MANY_EDGES,
    TOO_MANY_NODES,
    UNKNOWN_NODE_TYPE,
    GraphProblem,
)
from app.modules.execution.graph.topology import find_cycle, format_cycle


def validate_graph(
    raw: Mapping[str, Any],
    *,
    registry: Mapping[str, ExecutorSpec],
    max_nodes: int,
    max_edges: int,
    max_bytes: int,
    provider_missing_key: str | None = None,
) -> list[GraphProblem]:
    """Every problem of `raw`, never stopping at the first; an empty list means runnable.

    `provider_missing_key` is the id of a provider the run needs but has no key for; the caller
    decides that (it knows the run's provider), this only reports it alongside the rest.
    """
    problems = _size_problems(raw, max_bytes)
    parsed = parse_graph_lenient(raw)
    problems += parsed.problems
    graph = parsed.graph

    if len(graph.nodes) > max_nodes:
        problems.append(GraphProblem(
            TOO_MANY_NODES, f"graph has {len(graph.nodes)} nodes; the limit is {max_nodes}"))
    if len(graph.edges) > max_edges:
        problems.append(GraphProblem(
            TOO_MANY_EDGES, f"graph has {len(graph.edges)} edges; the limit is {max_edges}"))

    problems += _edge_problems(graph)
    problems += _cycle_problems(graph)

    for node in graph.nodes.values():
        if node.id in parsed.broken_node_ids:
            continue  # its type or data is unusable and already reported as invalid_graph
        spec = registry.get(node.type)
        if spec is None:
            problems.append(GraphProblem(
                UNKNOWN_NODE_TYPE, f"node '{node.id}' has unknown type '{node.type}'",
                node_id=node.id))
            continue
        problems += validate_config(spec, node.data, node_id=node.id)[1]

    if provider_missing_key is not None:
        problems.append(GraphProblem(
            PROVIDER_MISSING_KEY,
            f"provider '{provider_missing_key}' has no API key configured"))
    return problems


def _size_problems(raw: object, max_bytes: int) -> list[GraphProblem]:
    # Measured as compact UTF-8 JSON: the size the graph takes when stored.
    try:
        encoded = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return [GraphProblem(INVALID_GRAPH, f"graph is not JSON-serialisable: {exc}")]
    size = len(encoded.encode())
    if size > max_bytes:
        return [GraphProblem(
            GRAPH_TOO_LARGE, f"graph is {size} bytes as JSON; the limit is {max_bytes}")]
    return []


def _edge_problems(graph: Graph) -> list[GraphProblem]:
    problems: list[GraphProblem] = []
    for edge in graph.edges:
        missing = [
            f"{end} '{node_id}'"
            for end, node_id in (("source", edge.source), ("target", edge.target))
            if node_id not in graph.nodes
        ]
        if missing:
            problems.append(GraphProblem(
                DANGLING_EDGE,
                f"edge '{edge.id}': {' and '.join(missing)} "
                f"{'are not nodes' if len(missing) > 1 else 'is not a node'}",
                edge_id=edge.id))
        elif edge.source == edge.target:
            problems.append(GraphProblem(
                SELF_LOOP, f"edge '{edge.id}' connects node '{edge.source}' to itself",
                node_id=edge.source, edge_id=edge.id))
    return problems


def _cycle_problems(graph: Graph) -> list[GraphProblem]:
    # Self loops are already reported as such; leaving them out keeps one defect one problem.
    without_loops = Graph(
        nodes=graph.nodes, edges=[edge for edge in graph.edges if edge.source != edge.target])
    cycle = find_cycle(without_loops)
    if cycle is None:
        return []
    return [GraphProblem(
        CYCLE, f"graph has a cycle: {format_cycle(cycle)}", node_id=cycle[0], nodes=cycle)]
