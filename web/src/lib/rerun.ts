// The re-run preview (DESIGN.md §6 Partial re-run): D = the trigger and its descendants run;
// the ancestors of D outside D are served from cache.
import { childrenMap, parentsMap, reach, type EdgeLike } from "./dag";

export type RerunMark = "will-run" | "cached";

export function rerunSet(trigger: string, edges: EdgeLike[]): Map<string, RerunMark> {
  const willRun = reach([trigger], childrenMap(edges));
  const ancestors = reach(willRun, parentsMap(edges));
  const marks = new Map<string, RerunMark>();
  for (const id of ancestors) marks.set(id, willRun.has(id) ? "will-run" : "cached");
  return marks;
}
