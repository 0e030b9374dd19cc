"""Edge kinds: a text edge carries the source's text, an adapter edge its data (§6 Inputs)."""

from __future__ import annotations

from collections.abc import Mapping

from app.modules.execution.executors.api import ExecutorSpec, PortKind
from app.modules.execution.graph.model import Graph, GraphEdge


def edge_kind(edge: GraphEdge, graph: Graph, registry: Mapping[str, ExecutorSpec]) -> PortKind:
    """The kind of the target port the edge names; else the source port's; else "text".

    The target decides first because it is the consumer: a port declared as adapter means the
    node wants data there whatever sent it. Without a target handle the source's output port
    (its first one when the edge names none) decides, so a persona node wired to a default
    handle still delivers an adapter.
    """
    target_spec = _spec(edge.target, graph, registry)
    if target_spec is not None and edge.target_handle is not None:
        port = target_spec.input_port(edge.target_handle)
        if port is not None:
            return port.kind
    source_spec = _spec(edge.source, graph, registry)
    if source_spec is not None:
        port = source_spec.output_port(edge.source_handle)
        if port is not None:
            return port.kind
    return "text"


def classify_edges(graph: Graph, registry: Mapping[str, ExecutorSpec]) -> dict[str, PortKind]:
    """`edge_kind` of every edge, keyed by edge id."""
    return {edge.id: edge_kind(edge, graph, registry) for edge in graph.edges}


def _spec(
    node_id: str, graph: Graph, registry: Mapping[str, ExecutorSpec]
) -> ExecutorSpec | None:
    node = graph.nodes.get(node_id)
    return registry.get(node.type) if node is not None else None
