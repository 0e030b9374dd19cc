// Reachability over the drawn edges: the re-run set and the stale set both need it.

export interface EdgeLike {
  source: string;
  target: string;
}

export function childrenMap(edges: EdgeLike[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const e of edges) {
    const list = map.get(e.source);
    if (list) list.push(e.target);
    else map.set(e.source, [e.target]);
  }
  return map;
}

export function parentsMap(edges: EdgeLike[]): Map<string, string[]> {
  return childrenMap(edges.map((e) => ({ source: e.target, target: e.source })));
}

/** Every node reachable from `starts` along `next` (the starts included). */
export function reach(starts: Iterable<string>, next: Map<string, string[]>): Set<string> {
  const seen = new Set<string>();
  const stack = [...starts];
  while (stack.length) {
    const id = stack.pop() as string;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const n of next.get(id) ?? []) if (!seen.has(n)) stack.push(n);
  }
  return seen;
}
