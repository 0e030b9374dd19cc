"""The one shape every validation finding takes, so the API can return them all at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Problem codes (DESIGN.md §6). Kept as constants so callers and tests never misspell them.
INVALID_GRAPH = "invalid_graph"
TOO_MANY_NODES = "too_many_nodes"
TOO_MANY_EDGES = "too_many_edges"
GRAPH_TOO_LARGE = "graph_too_large"
DUPLICATE_NODE_ID = "duplicate_node_id"
DANGLING_EDGE = "dangling_edge"
SELF_LOOP = "self_loop"
CYCLE = "cycle"
UNKNOWN_NODE_TYPE = "unknown_node_type"
INVALID_NODE_CONFIG = "invalid_node_config"
PROVIDER_MISSING_KEY = "provider_missing_key"


@dataclass(frozen=True)
class GraphProblem:
    """One thing wrong with a graph. `nodes` is set only for `cycle`: the cycle, in order."""

    code: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None
    nodes: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; absent fields are dropped so clients see only what applies."""
        raw: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "node_id": self.node_id,
            "edge_id": self.edge_id,
            "nodes": list(self.nodes) if self.nodes is not None else None,
        }
        return {key: value for key, value in raw.items() if value is not None}
