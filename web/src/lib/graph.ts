// The graph as React Flow's toObject() gives it is graph_data, stored unchanged. Reading it
// back must tolerate anything a flow may hold (an empty {}, a graph written by a script).
import type { Edge, Node, Viewport } from "@xyflow/react";
import { isRecord } from "./events";

export interface GraphObject {
  nodes: Node[];
  edges: Edge[];
  viewport: Viewport;
}

export const DEFAULT_VIEWPORT: Viewport = { x: 0, y: 0, zoom: 1 };

export function fromGraphData(graph: unknown): GraphObject {
  const g = isRecord(graph) ? graph : {};
  const nodes = Array.isArray(g.nodes) ? g.nodes.filter(isNodeLike) : [];
  const edges = Array.isArray(g.edges) ? g.edges.filter(isEdgeLike) : [];
  const viewport = isViewport(g.viewport) ? g.viewport : DEFAULT_VIEWPORT;
  return {
    nodes: nodes.map((n) => ({
      ...n,
      position: isRecord(n.position) ? n.position : { x: 0, y: 0 },
      data: isRecord(n.data) ? n.data : {},
    }) as Node),
    edges: edges.map((e, i) => ({ ...e, id: typeof e.id === "string" && e.id ? e.id : `e${i}` }) as Edge),
    viewport,
  };
}

function isNodeLike(value: unknown): value is Record<string, unknown> & { id: string } {
  return isRecord(value) && typeof value.id === "string";
}

function isEdgeLike(value: unknown): value is Record<string, unknown> & { source: string; target: string } {
  return isRecord(value) && typeof value.source === "string" && typeof value.target === "string";
}

function isViewport(value: unknown): value is Viewport {
  return isRecord(value) && typeof value.x === "number" && typeof value.y === "number"
    && typeof value.zoom === "number";
}

/** A node's config as the server reads it: its data (the builder's label is ignored). */
export function nodeConfig(node: Node): Record<string, unknown> {
  return isRecord(node.data) ? node.data : {};
}

/** Unique-enough ids for new nodes and edges: type + counter over existing ids. */
export function nextNodeId(type: string, existing: Iterable<string>): string {
  const taken = new Set(existing);
  let i = 1;
  while (taken.has(`${type}-${i}`)) i += 1;
  return `${type}-${i}`;
}

/** Stable JSON (sorted keys): the comparison key of configs. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(",")}]`;
  if (isRecord(value)) {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
