// One shape for an event, whether it came through the tunnel or from GET /events.

export interface LogEvent {
  type: string;
  /** The event's user_seq (the tunnel cursor); null for ephemeral events (stream, progress). */
  cursor: number | null;
  runId: string | null;
  runSeq: number | null;
  ts: string | null;
  data: Record<string, unknown>;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

export function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A tunnel frame `{type, data, cursor?, ts?}` → LogEvent; null when it is not one. */
export function fromTunnel(frame: unknown): LogEvent | null {
  if (!isRecord(frame) || typeof frame.type !== "string") return null;
  const data = isRecord(frame.data) ? frame.data : {};
  return {
    type: frame.type,
    cursor: num(frame.cursor),
    runId: str(data.run_id),
    runSeq: num(data.run_seq),
    ts: str(frame.ts),
    data,
  };
}

/** A row of GET /events `{type, payload, run_id, run_seq, user_seq, created_at}` → LogEvent. */
export function fromLogRow(row: unknown): LogEvent | null {
  if (!isRecord(row) || typeof row.type !== "string") return null;
  const payload = isRecord(row.payload) ? row.payload : {};
  const runId = str(row.run_id);
  const runSeq = num(row.run_seq);
  // The tunnel puts run_id and run_seq inside data (DESIGN.md §4); so does this.
  const data = runId ? { ...payload, run_id: runId, ...(runSeq !== null ? { run_seq: runSeq } : {}) } : payload;
  return {
    type: row.type,
    cursor: num(row.user_seq),
    runId,
    runSeq,
    ts: str(row.created_at),
    data,
  };
}
