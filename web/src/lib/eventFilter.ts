// The event log's filters applied to live events, as the server applies them to the log
// (app/modules/events/manager.py): the type matches exactly or as a prefix ("flow.*").
import type { LogEvent } from "./events";

export interface EventFilters {
  type: string;
  runId: string;
}

function stripRight(text: string, chars: string): string {
  let end = text.length;
  while (end > 0 && chars.includes(text.charAt(end - 1))) end -= 1;
  return text.slice(0, end);
}

export function matchesType(type: string, filter: string): boolean {
  if (!filter) return true;
  return type === stripRight(filter, ".*") || type.startsWith(stripRight(filter, "*"));
}

export function matches(ev: LogEvent, filters: EventFilters): boolean {
  if (ev.cursor === null) return false; // ephemeral events are not in the log
  if (filters.runId && ev.runId !== filters.runId) return false;
  return matchesType(ev.type, filters.type.trim());
}

export function queryOf(filters: EventFilters): Record<string, string> {
  const q: Record<string, string> = {};
  if (filters.type.trim()) q.type = filters.type.trim();
  if (filters.runId.trim()) q.run_id = filters.runId.trim();
  return q;
}
