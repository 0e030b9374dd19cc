"""Graphs: parsing React Flow exports, validation, topology and edge kinds (DESIGN.md §6)."""

from app.modules.execution.graph.config import (
    COMMON_FIELDS,
    UNKNOWN_CONFIG_KEY,
    CommonFields,
    common_fields,
    unknown_config_keys,
    validate_config,
)
from app.modules.execution.graph.edges import classify_edges, edge_kind
from app.modules.execution.graph.model import (
    Graph,
    GraphEdge,
    GraphInvalidError,
    GraphNode,
    ParseResult,
    parse_graph,
    parse_graph_lenient,
)
from app.modules.execution.graph.problems import GraphProblem
from app.modules.execution.graph.topology import (
    CycleError,
    children,
    downstream,
    find_cycle,
    format_cycle,
    group_by_levels,
    parents,
    upstream,
)
from app.modules.execution.graph.validation import validate_graph

__all__ = [
    "COMMON_FIELDS",
    "UNKNOWN_CONFIG_KEY",
    "CommonFields",
    "CycleError",
    "Graph",
    "GraphEdge",
    "GraphInvalidError",
    "GraphNode",
    "GraphProblem",
    "ParseResult",
    "children",
    "classify_edges",
    "common_fields",
    "downstream",
    "edge_kind",
    "find_cycle",
    "format_cycle",
    "group_by_levels",
    "parents",
    "parse_graph",
    "parse_graph_lenient",
    "unknown_config_keys",
    "upstream",
    "validate_config",
    "validate_graph",
]
