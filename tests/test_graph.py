"""Graph parsing, validation, topology and edge kinds (DESIGN.md §6).

The topology properties are checked against networkx on thousands of random graphs; the
validation tests check that every problem is reported at once and nothing raises.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from app.modules.execution.executors import (
    ExecutorSpec,
    NodeExecutionContext,
    NodeOutput,
    Port,
    executor,
    spec_of,
)
from app.modules.execution.graph import (
    CycleError,
    Graph,
    GraphInvalidError,
    GraphProblem,
    children,
    classify_edges,
    common_fields,
    downstream,
    edge_kind,
    find_cycle,
    group_by_levels,
    parents,
    parse_graph,
    parse_graph_lenient,
    upstream,
    validate_config,
    validate_graph,
)

# --- fake executors -------------------------------------------------------------------------


class Limits(BaseModel):
    max_chars: int = 100


class LlmConfig(BaseModel):
    # extra="forbid" like a strict plugin: the validator must strip keys it does not declare.
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.7, ge=0, le=2)
    style: Literal["short", "long"] = "short"
    limits: Limits = Limits()


@executor(
    "llm", config=LlmConfig,
    inputs=(Port("input", "text"), Port("persona", "adapter")),
    outputs=(Port("output", "text"),),
)
async def llm(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput(text=ctx.input_text)


@executor("persona", inputs=(), outputs=(Port("persona", "adapter"),))
async def persona(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput(data={"name": "Ada"})


@executor("source", inputs=(), outputs=(Port("output", "text"), Port("meta", "adapter")))
async def source(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput(text="hello")


@executor("sink", outputs=())
async def sink(ctx: NodeExecutionContext) -> NodeOutput:
    return NodeOutput(text=ctx.input_text)


def _spec(fn: object) -> ExecutorSpec:
    spec = spec_of(fn)
    assert spec is not None
    return spec


REGISTRY: dict[str, ExecutorSpec] = {
    spec.type: spec for spec in map(_spec, (llm, persona, source, sink))
}


def validate(
    raw: Any, *, max_nodes: int = 10_000, max_edges: int = 50_000,
    max_bytes: int = 10_000_000, provider_missing_key: str | None = None,
) -> list[GraphProblem]:
    """`validate_graph` with the fake registry and generous limits unless a test narrows one."""
    return validate_graph(
        raw, registry=REGISTRY, max_nodes=max_nodes, max_edges=max_edges,
        max_bytes=max_bytes, provider_missing_key=provider_missing_key,
    )


def raw_graph(
    nodes: list[str] | list[tuple[str, str]], edges: list[tuple[str, str]]
) -> dict[str, Any]:
    """Nodes as ids (type "sink") or (id, type) pairs; edges as (source, target)."""
    node_list = [
        {"id": node, "type": "sink", "data": {}} if isinstance(node, str)
        else {"id": node[0], "type": node[1], "data": {}}
        for node in nodes
    ]
    return {
        "nodes": node_list,
        "edges": [{"source": src, "target": dst} for src, dst in edges],
    }


def to_nx(graph: Graph) -> nx.DiGraph:
    digraph = nx.DiGraph()
    digraph.add_nodes_from(graph.nodes)
    digraph.add_edges_from((edge.source, edge.target) for edge in graph.edges)
    return digraph


def codes(problems: list[GraphProblem]) -> list[str]:
    return [problem.code for problem in problems]


def assert_real_cycle(graph: Graph, cycle: list[str]) -> None:
    edges = {(edge.source, edge.target) for edge in graph.edges}
    assert cycle, "a cycle has at least one node"
    assert len(set(cycle)) == len(cycle), "a simple cycle visits each node once"
    for position, node_id in enumerate(cycle):
        assert (node_id, cycle[(position + 1) % len(cycle)]) in edges


# --- random graphs ----------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 24) -> Graph:
    """A random DAG whose input order is NOT a topological order (a shuffled rank)."""
    count = draw(st.integers(0, max_nodes))
    rank = draw(st.permutations(range(count)))  # rank[i] = i-th node in topological order
    pairs = draw(st.lists(
        st.tuples(st.integers(0, max(count - 1, 0)), st.integers(0, max(count - 1, 0))),
        max_size=count * 3,
    )) if count else []
    edges = [(f"n{rank[min(a, b)]}", f"n{rank[max(a, b)]}") for a, b in pairs if a != b]
    return parse_graph(raw_graph([f"n{i}" for i in range(count)], edges))


@st.composite
def digraphs(draw: st.DrawFn, max_nodes: int = 16) -> Graph:
    """Any directed graph (self loops included): some acyclic, most not."""
    count = draw(st.integers(1, max_nodes))
    index = st.integers(0, count - 1)
    pairs = draw(st.lists(st.tuples(index, index), max_size=count * 2))
    return parse_graph(raw_graph([f"n{i}" for i in range(count)],
                                 [(f"n{a}", f"n{b}") for a, b in pairs]))


@st.composite
def graphs_with_a_cycle(draw: st.DrawFn) -> Graph:
    """A random DAG plus a planted cycle through some of its nodes."""
    dag = draw(dags(max_nodes=20).filter(lambda graph: len(graph.nodes) >= 2))
    ids = list(dag.nodes)
    ring = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=6, unique=True))
    planted = [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]
    old = [(edge.source, edge.target) for edge in dag.edges]
    return parse_graph(raw_graph(ids, old + planted))


def examples(count: int) -> settings:
    # No deadline: CI machines stall at random. No example database: nothing written to disk.
    return settings(max_examples=count, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@examples(1200)
@given(dags())
def test_levels_match_networkx_generations(graph: Graph) -> None:
    levels = group_by_levels(graph)
    expected = [set(generation) for generation in nx.topological_generations(to_nx(graph))]
    assert [set(level) for level in levels] == expected

    # Every node exactly once, input order inside a level, every edge goes up a level.
    flat = [node_id for level in levels for node_id in level]
    assert sorted(flat) == sorted(graph.nodes) and len(flat) == len(set(flat))
    level_of = {node_id: depth for depth, level in enumerate(levels) for node_id in level}
    for level in levels:
        assert [graph.nodes[node_id].index for node_id in level] == sorted(
            graph.nodes[node_id].index for node_id in level)
    for edge in graph.edges:
        assert level_of[edge.source] < level_of[edge.target]
    # A node's level is 1 + its highest parent level.
    for node_id, depth in level_of.items():
        assert depth == max((level_of[p] + 1 for p in parents(graph, node_id)), default=0)


@examples(1200)
@given(digraphs())
def test_find_cycle_agrees_with_networkx(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert (cycle is None) == nx.is_directed_acyclic_graph(to_nx(graph))
    if cycle is None:
        group_by_levels(graph)  # must not raise
    else:
        assert_real_cycle(graph, cycle)
        with pytest.raises(CycleError) as caught:
            group_by_levels(graph)
        assert_real_cycle(graph, caught.value.cycle)


@examples(600)
@given(graphs_with_a_cycle())
def test_planted_cycles_are_found_in_order(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert cycle is not None
    assert_real_cycle(graph, cycle)
    problems = validate(
        {"nodes": [{"id": n, "type": "sink"} for n in graph.nodes],
         "edges": [{"source": e.source, "target": e.target} for e in graph.edges]})
    [problem] = [p for p in problems if p.code == "cycle"]
    assert problem.nodes is not None
    assert_real_cycle(graph, problem.nodes)


@examples(600)
@given(digraphs(), st.data())
def test_upstream_downstream_match_networkx(graph: Graph, data: st.DataObject) -> None:
    ids = list(graph.nodes)
    start = data.draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))
    digraph = to_nx(graph)
    # "Reachable over at least one edge": a start node counts only when something reaches it
    # (another start node, or itself around a cycle), which networkx's sets never include.
    ancestors: set[str] = set()
    descendants: set[str] = set()
    for node_id in start:
        for parent in digraph.predecessors(node_id):
            ancestors |= {parent} | nx.ancestors(digraph, parent)
        for child in digraph.successors(node_id):
            descendants |= {child} | nx.descendants(digraph, child)
    assert upstream(graph, start) == ancestors
    assert downstream(graph, start) == descendants


# --- topology, by hand --------------------------------------------------------------------------


def test_levels_keep_input_order_within_a_level() -> None:
    graph = parse_graph(raw_graph(["z", "b", "a", "y"], [("z", "y"), ("a", "y"), ("b", "y")]))
    assert group_by_levels(graph) == [["z", "b", "a"], ["y"]]
    assert parents(graph, "y") == ("z", "a", "b")  # edge order
    assert children(graph, "z") == ("y",)
    assert parents(graph, "missing") == ()


def test_upstream_includes_a_start_node_only_when_reached() -> None:
    graph = parse_graph(raw_graph(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d")]))
    assert upstream(graph, ["c"]) == {"a", "b"}
    assert upstream(graph, ["b", "c"]) == {"a", "b"}
    assert downstream(graph, ["b"]) == {"c", "d"}
    assert downstream(graph, ["b", "c"]) == {"c", "d"}
    assert downstream(graph, ["unknown"]) == set()


def test_duplicate_edges_do_not_break_levels() -> None:
    graph = parse_graph(raw_graph(["a", "b"], [("a", "b"), ("a", "b")]))
    assert group_by_levels(graph) == [["a"], ["b"]]
    assert len({edge.id for edge in graph.edges}) == 2  # ids stay unique


def test_long_chain_has_no_recursion_limit() -> None:
    count = 5_000
    ids = [f"n{i}" for i in range(count)]
    chain = list(itertools.pairwise(ids))
    raw = raw_graph(ids, chain)
    graph = parse_graph(raw)

    assert find_cycle(graph) is None
    assert group_by_levels(graph) == [[node_id] for node_id in ids]
    assert len(upstream(graph, [ids[-1]])) == count - 1
    assert len(downstream(graph, [ids[0]])) == count - 1
    assert validate(raw) == []

    looped = parse_graph(raw_graph(ids, [*chain, (ids[-1], ids[0])]))
    cycle = find_cycle(looped)
    assert cycle is not None and len(cycle) == count
    assert_real_cycle(looped, cycle)


# --- parsing ------------------------------------------------------------------------------------


REACT_FLOW_EXPORT: dict[str, Any] = {
    "nodes": [
        {
            "id": "persona-1", "type": "persona", "data": {"label": "Ada"},
            "position": {"x": 0, "y": 0}, "positionAbsolute": {"x": 0, "y": 0},
            "measured": {"width": 180, "height": 60}, "selected": True, "dragging": False,
            "style": {"border": "1px solid"}, "width": 180, "height": 60,
        },
        {
            "id": "llm-1", "type": "llm",
            "data": {"label": "Writer", "temperature": 0.9, "model": "gpt-4o", "timeout_s": 30,
                     "max_attempts": 3},
            "position": {"x": 200, "y": 0}, "measured": {"width": 180, "height": 60},
            "selected": False,
        },
        {"id": "out", "type": "sink", "position": {"x": 400, "y": 0}},
    ],
    "edges": [
        {"id": "xy-edge__persona-1persona-llm-1persona", "source": "persona-1",
         "target": "llm-1", "sourceHandle": "persona", "targetHandle": "persona",
         "animated": True, "style": {"stroke": "#f00"}, "selected": False},
        {"source": "llm-1", "target": "out", "sourceHandle": None, "targetHandle": None,
         "type": "smoothstep", "markerEnd": {"type": "arrowclosed"}},
    ],
    "viewport": {"x": 10, "y": -5, "zoom": 1.25},
}


def test_react_flow_export_parses_and_validates() -> None:
    graph = parse_graph(REACT_FLOW_EXPORT)
    assert list(graph.nodes) == ["persona-1", "llm-1", "out"]
    assert graph.nodes["llm-1"].type == "llm" and graph.nodes["llm-1"].index == 1
    assert graph.nodes["out"].data == {}
    first, second = graph.edges
    assert (first.source_handle, first.target_handle) == ("persona", "persona")
    assert second.id == "llm-1->out" and second.source_handle is None
    assert group_by_levels(graph) == [["persona-1"], ["llm-1"], ["out"]]
    assert validate(REACT_FLOW_EXPORT) == []


@pytest.mark.parametrize(
    "raw",
    [
        [],
        None,
        {"nodes": {"a": {"id": "a", "type": "sink"}}, "edges": []},
        {"nodes": [{"type": "sink"}], "edges": []},
        {"nodes": [{"id": 7, "type": "sink"}]},
        {"nodes": ["a"]},
        {"nodes": [{"id": "a", "type": "sink"}], "edges": [{"target": "a"}]},
        {"nodes": [{"id": "a", "type": "sink"}], "edges": "a->a"},
        {"nodes": [{"id": "a", "type": "sink"}], "edges": [{"source": "a", "target": "a",
                                                            "sourceHandle": 3}]},
        {"nodes": [{"id": "a", "type": None}]},
        {"nodes": [{"id": "a", "type": "sink", "data": "oops"}]},
        {"nodes": [{"id": "a", "type": "sink"}], "edges": [{"id": 5, "source": "a",
                                                            "target": "a"}]},
    ],
)
def test_structurally_broken_input_gives_invalid_graph(raw: Any) -> None:
    problems = validate(raw)
    assert "invalid_graph" in codes(problems)
    with pytest.raises(GraphInvalidError) as caught:
        parse_graph(raw)
    assert all(problem.code == "invalid_graph" for problem in caught.value.problems)


def test_broken_pieces_do_not_hide_other_problems() -> None:
    raw = {
        "nodes": [{"id": "a", "type": "sink"}, {"type": "sink"}, {"id": "b", "type": "nope"}],
        "edges": [{"source": "a"}, {"source": "a", "target": "ghost"}],
    }
    assert sorted(codes(validate(raw))) == [
        "dangling_edge", "invalid_graph", "invalid_graph", "unknown_node_type"]


def test_node_with_bad_data_is_kept_so_its_edges_are_not_dangling() -> None:
    raw = {"nodes": [{"id": "a", "type": "llm", "data": []}, {"id": "b", "type": "sink"}],
           "edges": [{"source": "a", "target": "b"}]}
    result = parse_graph_lenient(raw)
    assert "a" in result.graph.nodes and result.broken_node_ids == {"a"}
    assert codes(validate(raw)) == ["invalid_graph"]


def test_missing_lists_mean_an_empty_graph() -> None:
    assert parse_graph({}).nodes == {}
    assert validate({"viewport": {}}) == []
    assert group_by_levels(parse_graph({})) == []


# --- validation ---------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    raw = {
        "nodes": [
            {"id": "a", "type": "llm", "data": {}},
            {"id": "a", "type": "sink"},                                      # duplicate id
            {"id": "b", "type": "mystery"},                                   # unknown type
            {"id": "c", "type": "llm", "data": {"temperature": "hot", "max_attempts": 0}},
            {"id": "d", "type": "sink"},
            {"id": "e", "type": "sink"},
            {"id": "f", "type": "sink"},
        ],
        "edges": [
            {"id": "to-ghost", "source": "a", "target": "ghost"},              # dangling
            {"id": "loop", "source": "d", "target": "d"},                      # self loop
            {"id": "de", "source": "d", "target": "e"},                        # cycle d→e→f→d
            {"id": "ef", "source": "e", "target": "f"},
            {"id": "fd", "source": "f", "target": "d"},
        ],
    }
    problems = validate(raw, provider_missing_key="openai")
    by_code: dict[str, list[GraphProblem]] = {}
    for problem in problems:
        by_code.setdefault(problem.code, []).append(problem)

    assert set(by_code) == {
        "duplicate_node_id", "unknown_node_type", "invalid_node_config", "dangling_edge",
        "self_loop", "cycle", "provider_missing_key",
    }
    assert by_code["duplicate_node_id"][0].node_id == "a"
    assert by_code["unknown_node_type"][0].node_id == "b"
    assert {p.node_id for p in by_code["invalid_node_config"]} == {"c"}
    assert len(by_code["invalid_node_config"]) == 2  # temperature and max_attempts
    dangling = by_code["dangling_edge"][0]
    assert dangling.edge_id == "to-ghost" and "target 'ghost'" in dangling.message
    assert by_code["self_loop"][0].to_dict() == {
        "code": "self_loop", "message": by_code["self_loop"][0].message,
        "node_id": "d", "edge_id": "loop"}
    [cycle] = by_code["cycle"]  # one cycle, and the self loop is not reported twice
    assert cycle.nodes == ["d", "e", "f"]
    assert "d → e → f → d" in cycle.message
    assert cycle.to_dict()["nodes"] == ["d", "e", "f"]
    assert "openai" in by_code["provider_missing_key"][0].message


def test_dangling_edge_message_says_which_end() -> None:
    raw = raw_graph(["a"], [("ghost", "a"), ("x", "y")])
    messages = [p.message for p in validate(raw)]
    assert "source 'ghost' is not a node" in messages[0]
    assert "source 'x' and target 'y' are not nodes" in messages[1]


def test_limits_produce_their_codes() -> None:
    raw = raw_graph(["a", "b", "c"], [("a", "b"), ("b", "c")])
    size = len(json.dumps(raw, separators=(",", ":")).encode())

    def check(max_nodes: int = 3, max_edges: int = 2, max_bytes: int = size) -> list[str]:
        return codes(validate(raw, max_nodes=max_nodes, max_edges=max_edges, max_bytes=max_bytes))

    assert check(max_nodes=2) == ["too_many_nodes"]
    assert check(max_edges=1) == ["too_many_edges"]
    assert check(max_bytes=size - 1) == ["graph_too_large"]
    assert check(max_nodes=1, max_edges=0, max_bytes=1) == [
        "graph_too_large", "too_many_nodes", "too_many_edges"]
    assert check() == []  # exactly at every limit is fine


def test_problem_to_dict_drops_none() -> None:
    assert GraphProblem("unknown_node_type", "m", node_id="a").to_dict() == {
        "code": "unknown_node_type", "message": "m", "node_id": "a"}


# --- node config --------------------------------------------------------------------------------


def test_config_ignores_keys_neither_side_knows() -> None:
    config, problems = validate_config(
        REGISTRY["llm"], {"label": "Writer", "temperature": 1.2, "model": "m", "extra": 1})
    assert problems == []
    assert isinstance(config, LlmConfig) and config.temperature == 1.2


def test_config_errors_name_the_field_path() -> None:
    config, problems = validate_config(
        REGISTRY["llm"], {"style": "epic", "limits": {"max_chars": "many"}}, node_id="n1")
    assert config is None
    messages = sorted(p.message for p in problems)
    assert len(messages) == 2
    assert any("limits.max_chars" in m for m in messages)
    assert any("style" in m for m in messages)
    assert all(p.code == "invalid_node_config" and p.node_id == "n1" for p in problems)


@pytest.mark.parametrize(
    ("data", "bad"),
    [
        ({"model": ""}, "model"),
        ({"model": 3}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.5}, "timeout_s"),
        ({"timeout_s": "10"}, "timeout_s"),
        ({"timeout_s": True}, "timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
    ],
)
def test_bad_common_fields_are_config_errors(data: dict[str, Any], bad: str) -> None:
    config, problems = validate_config(REGISTRY["sink"], data)
    assert config is not None  # the executor's own config is fine
    [problem] = problems
    assert problem.code == "invalid_node_config" and bad in problem.message
    assert getattr(common_fields(data), bad) is None


def test_common_fields_read_valid_values() -> None:
    fields = common_fields({"model": "gpt-4o", "timeout_s": 5, "max_attempts": 2, "x": 1})
    assert (fields.model, fields.timeout_s, fields.max_attempts) == ("gpt-4o", 5.0, 2)
    assert common_fields({"model": None}).model is None
    assert validate_config(REGISTRY["sink"], {"model": None})[1] == []


def test_common_fields_never_reach_the_config_model() -> None:
    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: int = 0  # a plugin reusing a common name must not get the engine's value

    @executor("strict", config=Strict)
    async def strict(ctx: NodeExecutionContext) -> NodeOutput:
        return NodeOutput()

    config, problems = validate_config(_spec(strict), {"model": "gpt-4o"})
    assert problems == [] and isinstance(config, Strict) and config.model == 0


# --- edge kinds ---------------------------------------------------------------------------------


def test_edge_kinds() -> None:
    raw = {
        "nodes": [
            {"id": "p", "type": "persona"}, {"id": "s", "type": "source"},
            {"id": "w", "type": "llm"}, {"id": "x", "type": "mystery"},
        ],
        "edges": [
            {"id": "target-adapter", "source": "s", "target": "w", "targetHandle": "persona"},
            {"id": "target-text", "source": "p", "target": "w", "targetHandle": "input"},
            {"id": "unknown-target-handle", "source": "p", "target": "w",
             "targetHandle": "nope"},
            {"id": "source-first-port", "source": "p", "target": "w"},
            {"id": "source-named-adapter", "source": "s", "target": "w", "sourceHandle": "meta"},
            {"id": "source-named-text", "source": "s", "target": "w", "sourceHandle": "output"},
            {"id": "source-unknown-handle", "source": "p", "target": "w",
             "sourceHandle": "nope"},
            {"id": "unknown-types", "source": "x", "target": "x"},
            {"id": "dangling", "source": "ghost", "target": "w"},
        ],
    }
    graph = parse_graph(raw)
    kinds = classify_edges(graph, REGISTRY)
    assert kinds == {
        "target-adapter": "adapter",
        "target-text": "text",
        "unknown-target-handle": "adapter",  # falls back to the persona's first output
        "source-first-port": "adapter",
        "source-named-adapter": "adapter",
        "source-named-text": "text",
        "source-unknown-handle": "text",
        "unknown-types": "text",
        "dangling": "text",
    }
    assert edge_kind(graph.edges[0], graph, REGISTRY) == "adapter"
    assert classify_edges(graph, {}) == dict.fromkeys(kinds, "text")
