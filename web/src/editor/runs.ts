// Loading a run from the log (the source of truth) and the per-run graph snapshots that the
// stale markers compare against.
import { api } from "../api/client";
import { fromLogRow, isRecord, str, type LogEvent } from "../lib/events";
import { runFromEvents, type RunView } from "../lib/runState";
import type { Snapshot } from "../lib/stale";

export async function runEvents(runId: string): Promise<LogEvent[] | null> {
  const events: LogEvent[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page += 1) {
    const { data } = await api.GET("/api/v1/events", { params: { query: { run_id: runId, limit: 1000, cursor } } });
    if (!isRecord(data) || !Array.isArray(data.items)) return page === 0 ? null : events;
    for (const row of data.items) {
      const ev = fromLogRow(row);
      if (ev) events.push(ev);
    }
    const next = str(data.next_cursor);
    if (!next) break;
    cursor = next;
  }
  return events;
}

export async function loadRun(runId: string): Promise<RunView | null> {
  const events = await runEvents(runId);
  return events ? runFromEvents(runId, events) : null;
}

export async function latestRunId(flowId: string): Promise<string | null> {
  const { data } = await api.GET("/api/v1/execution/runs", { params: { query: { flow_id: flowId, limit: 1 } } });
  if (!isRecord(data) || !Array.isArray(data.items)) return null;
  const first: unknown = data.items[0];
  return isRecord(first) ? str(first.id) : null;
}

const SNAP_PREFIX = "cascade.snapshot.";
const SNAP_KEEP = 50;

export function saveSnapshot(runId: string, snap: Snapshot): void {
  try {
    localStorage.setItem(SNAP_PREFIX + runId, JSON.stringify(snap));
    const keys = Object.keys(localStorage).filter((k) => k.startsWith(SNAP_PREFIX));
    if (keys.length > SNAP_KEEP) for (const k of keys.slice(0, keys.length - SNAP_KEEP)) localStorage.removeItem(k);
  } catch {
    // storage full or disabled: stale markers are a convenience, the run goes on
  }
}

export function readSnapshot(runId: string): Snapshot | null {
  try {
    const raw = localStorage.getItem(SNAP_PREFIX + runId);
    if (!raw) return null;
    const parsed: unknown = JSON.parse(raw);
    return isRecord(parsed) ? (parsed as Snapshot) : null;
  } catch {
    return null;
  }
}
