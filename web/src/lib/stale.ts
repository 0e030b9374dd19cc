// Stale markers: a node whose config (or set of inputs) changed since the run it was last
// painted from, and everything downstream of it, would give a different result now.
import { childrenMap, reach, type EdgeLike } from "./dag";
import { stableJson } from "./graph";

export interface NodeLike {
  id: string;
  type?: string;
  data?: Record<string, unknown>;
}

/** The part of a node that decides its result: type, config (without the label), inputs. */
export type Snapshot = Record<string, string>;

const IGNORED = new Set(["label"]);

function inputsKey(id: string, edges: (EdgeLike & { sourceHandle?: string | null; targetHandle?: string | null })[]): string {
  return edges.filter((e) => e.target === id)
    .map((e) => `${e.source}:${e.sourceHandle ?? ""}>${e.targetHandle ?? ""}`).sort().join("|");
}

export function snapshot(nodes: NodeLike[], edges: EdgeLike[]): Snapshot {
  const snap: Snapshot = {};
  for (const n of nodes) {
    const config = Object.fromEntries(Object.entries(n.data ?? {}).filter(([k]) => !IGNORED.has(k)));
    snap[n.id] = stableJson({ type: n.type ?? null, config, inputs: inputsKey(n.id, edges) });
  }
  return snap;
}

/**
 * The stale nodes: those in `ran` (the nodes the last run covered) whose snapshot differs
 * from now, plus every descendant of theirs in the current graph.
 */
export function staleNodes(before: Snapshot, nodes: NodeLike[], edges: EdgeLike[],
                           ran: Iterable<string>): Set<string> {
  const now = snapshot(nodes, edges);
  const changed: string[] = [];
  for (const id of ran) {
    if (id in now && before[id] !== undefined && before[id] !== now[id]) changed.push(id);
  }
  if (!changed.length) return new Set();
  const stale = reach(changed, childrenMap(edges));
  const ranSet = new Set(ran);
  // A node never run has no result to be stale; a new node only shows no status.
  for (const id of [...stale]) if (!ranSet.has(id)) stale.delete(id);
  return stale;
}
