import { useEffect, useState } from "react";
import { api } from "../api/client";
import { isRecord, num, str } from "../lib/events";
import { navigate } from "../lib/router";
import { formatMs, StatusLabel } from "./status";

interface RunRow {
  id: string;
  status: string;
  createdAt: string | null;
  startedAt: string | null;
  durationMs: number | null;
  tokens: { input: number; output: number } | null;
  costUsd: number | null;
  triggerNodeId: string | null;
}

function parseRuns(body: unknown): { items: RunRow[]; next: string | null } {
  if (!isRecord(body) || !Array.isArray(body.items)) return { items: [], next: null };
  const items = body.items.filter(isRecord).map((r) => ({
    id: str(r.id) ?? "", status: str(r.status) ?? "unknown", createdAt: str(r.created_at),
    startedAt: str(r.started_at), durationMs: num(r.duration_ms),
    tokens: isRecord(r.tokens) ? { input: num(r.tokens.input) ?? 0, output: num(r.tokens.output) ?? 0 } : null,
    costUsd: num(r.cost_usd), triggerNodeId: str(r.trigger_node_id),
  })).filter((r) => r.id);
  return { items, next: str(body.next_cursor) };
}

/** The flow's runs, newest first; opening one paints it from its events. */
export function RunHistory({ flowId, currentRunId, refreshKey }: { flowId: string; currentRunId: string | null; refreshKey: string }) {
  const [rows, setRows] = useState<RunRow[]>([]);
  const [next, setNext] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    void api.GET("/api/v1/execution/runs", { params: { query: { flow_id: flowId, limit: 50 } } }).then(({ data }) => {
      if (!live) return;
      const parsed = parseRuns(data);
      setRows(parsed.items);
      setNext(parsed.next);
    });
    return () => {
      live = false;
    };
  }, [flowId, refreshKey]);

  async function more() {
    if (!next) return;
    const { data } = await api.GET("/api/v1/execution/runs", { params: { query: { flow_id: flowId, limit: 50, cursor: next } } });
    const parsed = parseRuns(data);
    setRows((r) => [...r, ...parsed.items]);
    setNext(parsed.next);
  }

  return (
    <section className="history" data-testid="run-history" aria-label="Run history">
      <h3>Run history</h3>
      {rows.length === 0 ? <p className="muted">No runs yet.</p> : (
        <table>
          <thead><tr><th>Status</th><th>Started</th><th>Duration</th><th>Tokens</th><th>Cost</th></tr></thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id} data-testid={`run-row-${r.id}`} className={r.id === currentRunId ? "current" : ""}
                  tabIndex={0} role="link" aria-label={`Open run of ${r.startedAt ?? r.createdAt ?? ""}`}
                  onClick={() => navigate(`/flows/${flowId}/runs/${r.id}`)}
                  onKeyDown={(e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); navigate(`/flows/${flowId}/runs/${r.id}`); } }}>
                <td><StatusLabel status={r.status} />{r.triggerNodeId ? <span className="muted"> from {r.triggerNodeId}</span> : null}</td>
                <td>{r.startedAt || r.createdAt ? new Date((r.startedAt ?? r.createdAt) as string).toLocaleString() : "—"}</td>
                <td>{r.durationMs !== null ? formatMs(r.durationMs) : "—"}</td>
                <td>{r.tokens ? r.tokens.input + r.tokens.output : "—"}</td>
                <td>{r.costUsd !== null ? `$${r.costUsd.toFixed(4)}` : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && <button type="button" onClick={() => void more()}>Older runs</button>}
    </section>
  );
}
