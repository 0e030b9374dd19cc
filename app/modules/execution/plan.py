"""A run plan: the validated graph with everything the runner needs decided up front."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from app.modules.execution.executors.api import ExecutorSpec
from app.modules.execution.graph import (
    UNKNOWN_CONFIG_KEY,
    CommonFields,
    Graph,
    classify_edges,
    common_fields,
    downstream,
    group_by_levels,
    unknown_config_keys,
    upstream,
    validate_config,
)


@dataclass
class RunPlan:
    run_id: uuid.UUID
    user_id: int
    project_id: int | None
    flow_id: uuid.UUID | None
    provider_id: str
    graph: Graph
    specs: Mapping[str, ExecutorSpec]  # node id → spec
    configs: Mapping[str, BaseModel]  # node id → validated config
    commons: Mapping[str, CommonFields]
    edge_kinds: Mapping[str, str]
    # Nodes of the run in level order; cached nodes come with their outputs.
    levels: list[list[str]]
    to_run: frozenset[str]
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    trigger_node_id: str | None = None
    # `data` keys nothing reads: [{node_id, code: "unknown_config_key", key}] (DESIGN.md §3).
    warnings: list[dict[str, str]] = field(default_factory=list)
    # Every ancestor output the plan could reuse (a superset of `cached`): building the plan
    # again from these (a worker, in queue mode) gives the same plan.
    reusable: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def node_ids(self) -> list[str]:
        return [node_id for level in self.levels for node_id in level]

    def level_of(self) -> dict[str, int]:
        return {node_id: i for i, level in enumerate(self.levels) for node_id in level}


def run_scope(graph: Graph, trigger_node_id: str | None) -> tuple[set[str], set[str]]:
    """(D, ancestors): D = the trigger and its descendants (or every node without a
    trigger); ancestors = every ancestor of D outside D (DESIGN.md §6 partial re-run)."""
    if trigger_node_id is None:
        return set(graph.nodes), set()
    in_d = {trigger_node_id} | downstream(graph, [trigger_node_id])
    return in_d, upstream(graph, in_d) - in_d


def build_plan(
    *, run_id: uuid.UUID, user_id: int, project_id: int | None, flow_id: uuid.UUID | None,
    provider_id: str, graph: Graph, registry: Mapping[str, ExecutorSpec],
    trigger_node_id: str | None, available_outputs: Mapping[str, dict[str, Any]],
) -> RunPlan:
    """Decide what runs. The graph is already validated, so configs validate cleanly.

    An ancestor outside D is cached when an output is available for it; one without an
    output must run, and so must its own ancestors that have none (they feed it)."""
    in_d, ancestors = run_scope(graph, trigger_node_id)
    cached = {n: dict(available_outputs[n]) for n in ancestors if n in available_outputs}
    must_run = set(in_d)
    frontier = [n for n in ancestors if n not in cached]
    while frontier:
        node_id = frontier.pop()
        if node_id in must_run:
            continue
        must_run.add(node_id)
        frontier.extend(p for p in graph.parents_of.get(node_id, ()) if p not in cached)
    members = must_run | set(cached)
    # Cached nodes whose output nobody in the run needs are left out.
    needed_cached = {n for n in cached
                     if any(c in must_run for c in graph.children_of.get(n, ()))}
    members = must_run | needed_cached
    sub = Graph(nodes={k: v for k, v in graph.nodes.items() if k in members},
                edges=[e for e in graph.edges if e.source in members and e.target in members])
    specs = {node_id: registry[node.type] for node_id, node in sub.nodes.items()}
    configs: dict[str, BaseModel] = {}
    commons: dict[str, CommonFields] = {}
    warnings: list[dict[str, str]] = []
    for node_id, node in sub.nodes.items():
        warnings += [{"node_id": node_id, "code": UNKNOWN_CONFIG_KEY, "key": key}
                     for key in unknown_config_keys(specs[node_id], node.data)]
        config, problems = validate_config(specs[node_id], node.data, node_id=node_id)
        if config is None or problems:
            raise ValueError(f"node {node_id} has an invalid config after validation")
        configs[node_id] = config
        commons[node_id] = common_fields(node.data)
    return RunPlan(
        run_id=run_id, user_id=user_id, project_id=project_id, flow_id=flow_id,
        provider_id=provider_id, graph=sub, specs=specs, configs=configs, commons=commons,
        edge_kinds=classify_edges(sub, registry), levels=group_by_levels(sub),
        to_run=frozenset(must_run), cached={n: cached[n] for n in needed_cached},
        trigger_node_id=trigger_node_id, warnings=warnings, reusable=cached,
    )
