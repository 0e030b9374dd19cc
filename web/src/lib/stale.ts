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

type EdgeWithHandles = EdgeLike & { sourceHandle?: string | null; targetHandle?: string | null };

/** Each target's inputs key, from one pass over the edges (not one pass per node). */
function inputsKeys(edges: EdgeWithHandles[]): Map<string, string> {
  const byTarget = new Map<string, string[]>();
  for (const e of edges) {
    const key = `${e.source}:${e.sourceHandle ?? ""}>${e.targetHandle ?? ""}`;
    const list = byTarget.get(e.target);
    if (list) list.push(key);
    else byTarget.set(e.target, [key]);
  }
  const keys = new Map<string, string>();
  for (const [target, list] of byTarget) keys.set(target, list.sort().join("|"));
  return keys;
}

export function snapshot(nodes: NodeLike[], edges: EdgeLike[]): Snapshot {
  const inputs = inputsKeys(edges);
  const snap: Snapshot = {};
  for (const n of nodes) {
    const config = Object.fromEntries(Object.entries(n.data ?? {}).filter(([k]) => !IGNORED.has(k)));
    snap[n.id] = stableJson({ type: n.type ?? null, config, inputs: inputs.get(n.id) ?? "" });
  }
  return snap;
}

/** The nodes in both snapshots whose snapshot differs: the only possible stale roots. */
export function changedNodes(before: Snapshot, now: Snapshot): string[] {
  const changed: string[] = [];
  for (const id of Object.keys(now)) {
    if (before[id] !== undefined && before[id] !== now[id]) changed.push(id);
  }
  return changed;
}

/**
 * The stale nodes: those in `ran` (the nodes the last run covered) among `changed`, plus every
 * descendant of theirs in the current graph, limited to `ran` as well.
 */
export function staleFrom(changed: string[], edges: EdgeLike[], ran: Iterable<string>): Set<string> {
  const ranSet = new Set(ran);
  const roots = changed.filter((id) => ranSet.has(id));
  if (!roots.length) return new Set();
  const stale = reach(roots, childrenMap(edges));
  // A node never run has no result to be stale; a new node only shows no status.
  for (const id of [...stale]) if (!ranSet.has(id)) stale.delete(id);
  return stale;
}

/** staleFrom for a snapshot taken at the run and the graph now. */
export function staleNodes(before: Snapshot, nodes: NodeLike[], edges: EdgeLike[],
                           ran: Iterable<string>): Set<string> {
  return staleFrom(changedNodes(before, snapshot(nodes, edges)), edges, ran);
}
