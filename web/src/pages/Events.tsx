import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { api, authedFetch, errorMessage } from "../api/client";
import { Header } from "../app/Header";
import { tunnel } from "../app/tunnel";
import { fromLogRow, isRecord, str, type LogEvent } from "../lib/events";
import { matches, queryOf, type EventFilters } from "../lib/eventFilter";
import { navigate } from "../lib/router";

const PAGE = 100;

export function EventsPage() {
  const initial = new URLSearchParams(window.location.search);
  const [form, setForm] = useState<EventFilters>({ type: initial.get("type") ?? "", runId: initial.get("run_id") ?? "" });
  const [filters, setFilters] = useState<EventFilters>(form);
  const [rows, setRows] = useState<LogEvent[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [tail, setTail] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const atEnd = useRef(false);

  const fetchPage = useCallback(async (cursor: string | null, replace: boolean) => {
    setLoading(true);
    const { data, error: failure } = await api.GET("/api/v1/events", {
      params: { query: { ...queryOf(filters), limit: PAGE, ...(cursor ? { cursor } : {}) } },
    });
    setLoading(false);
    if (!isRecord(data) || !Array.isArray(data.items)) {
      setError(errorMessage(failure, "the event log could not be read"));
      return;
    }
    setError(null);
    const items = data.items.map(fromLogRow).filter((e): e is LogEvent => e !== null);
    const nextCursor = str(data.next_cursor);
    atEnd.current = nextCursor === null;
    setNext(nextCursor);
    setRows((old) => mergeRows(replace ? [] : old, items));
  }, [filters]);

  useEffect(() => {
    void fetchPage(null, true);
  }, [fetchPage]);

  // Live tail: persisted events that match, appended once the log has been read to its end.
  useEffect(() => {
    if (!tail) return;
    return tunnel.onEvent((ev) => {
      if (atEnd.current && matches(ev, filters)) setRows((old) => mergeRows(old, [ev]));
    });
  }, [tail, filters]);

  function apply(e: FormEvent) {
    e.preventDefault();
    setFilters({ ...form });
    const q = new URLSearchParams(queryOf(form)).toString();
    window.history.replaceState(null, "", `/events${q ? `?${q}` : ""}`);
  }

  async function exportNdjson() {
    const q = new URLSearchParams(queryOf(filters)).toString();
    const response = await authedFetch(`/api/v1/events${q ? `?${q}` : ""}`, { headers: { Accept: "application/x-ndjson" } });
    if (!response.ok) return setError("the export failed");
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = "cascade-events.ndjson";
    document.body.appendChild(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  return (
    <>
      <Header />
      <main className="events-page">
        <h1>Event log</h1>
        <form className="inline-form filters" onSubmit={apply} aria-label="Filters">
          <label>Type <input value={form.type} placeholder="execution.* or flow.created" onChange={(e) => setForm({ ...form, type: e.target.value })} /></label>
          <label>Run <input value={form.runId} placeholder="run id" onChange={(e) => setForm({ ...form, runId: e.target.value })} /></label>
          <button type="submit">Apply</button>
          <label className="check"><input type="checkbox" checked={tail} onChange={(e) => setTail(e.target.checked)} /> Live tail</label>
          <button type="button" onClick={() => void exportNdjson()}>Export NDJSON</button>
        </form>
        {error && <p role="alert" className="form-error">{error}</p>}
        <table className="event-log" data-testid="event-log">
          <thead><tr><th>#</th><th>Time</th><th>Type</th><th>Run</th><th>Node</th><th>Details</th></tr></thead>
          <tbody>
            {rows.map((ev) => <EventRow key={ev.cursor} ev={ev} onRun={(id) => { const f = { ...form, runId: id }; setForm(f); setFilters(f); }} />)}
          </tbody>
        </table>
        {rows.length === 0 && !loading && <p className="muted">No events.</p>}
        {next && <button type="button" disabled={loading} onClick={() => void fetchPage(next, false)}>Load more</button>}
      </main>
    </>
  );
}

function mergeRows(old: LogEvent[], items: LogEvent[]): LogEvent[] {
  const seen = new Set(old.map((e) => e.cursor));
  const added = items.filter((e) => e.cursor !== null && !seen.has(e.cursor));
  if (!added.length) return old;
  return [...old, ...added].sort((a, b) => (a.cursor ?? 0) - (b.cursor ?? 0));
}

/** The flow of a run event: in its payload (DESIGN.md §5), else from the run itself. */
async function flowOf(ev: LogEvent): Promise<string | null> {
  const inPayload = str(ev.data.flow_id);
  if (inPayload || !ev.runId) return inPayload;
  const { data } = await api.GET("/api/v1/execution/runs/{run_id}", { params: { path: { run_id: ev.runId } } });
  return isRecord(data) ? str(data.flow_id) : null;
}

function EventRow({ ev, onRun }: { ev: LogEvent; onRun: (runId: string) => void }) {
  const nodeId = str(ev.data.node_id);
  const status = str(ev.data.status);
  const { run_id: _r, run_seq: _s, ...rest } = ev.data;
  void _r;
  void _s;
  const goToNode = async () => {
    const flowId = await flowOf(ev);
    if (flowId && nodeId && ev.runId) navigate(`/flows/${flowId}/runs/${ev.runId}?node=${encodeURIComponent(nodeId)}`);
  };
  return (
    <tr data-testid={`event-row-${ev.cursor}`} data-type={ev.type}>
      <td>{ev.cursor}</td>
      <td>{ev.ts ? new Date(ev.ts).toLocaleTimeString() : ""}</td>
      <td>{ev.type}{status ? ` (${status})` : ""}</td>
      <td>{ev.runId ? <button type="button" className="link" title="Only this run" onClick={() => onRun(ev.runId as string)}>{ev.runId.slice(0, 8)}</button> : ""}</td>
      <td>
        {nodeId && ev.runId ? (
          <button type="button" className="link" onClick={() => void goToNode()}>go to {nodeId}</button>
        ) : nodeId ?? ""}
      </td>
      <td><code className="payload">{JSON.stringify(rest)}</code></td>
    </tr>
  );
}
