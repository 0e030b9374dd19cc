import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { TERMINAL_RUN, type RunView } from "../lib/runState";
import type { RunStore } from "../lib/runStore";
import { formatMs, StatusLabel } from "./status";

function useRun(store: RunStore): RunView | null {
  return useSyncExternalStore(store.subscribe, store.getRun);
}

function useNow(active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => setNow(Date.now()), 250);
    return () => window.clearInterval(timer);
  }, [active]);
  return now;
}

/** The run badge (status, run id, elapsed time) and the Cancel button. */
export function RunBadge({ store, onCancel, adoptedAt }: { store: RunStore; onCancel: (runId: string) => void; adoptedAt: Map<string, number> }) {
  const run = useRun(store);
  const active = run !== null && !TERMINAL_RUN.has(run.status);
  const now = useNow(active);
  if (!run) return null;
  const start = run.startedAt ? Date.parse(run.startedAt) : adoptedAt.get(run.runId) ?? null;
  const end = run.finishedAt ? Date.parse(run.finishedAt) : active ? now : null;
  const elapsed = start !== null && end !== null ? Math.max(0, end - start) : null;
  return (
    <>
      <span className="run-status" data-testid="run-status" data-status={run.status} data-run-id={run.runId}>
        <StatusLabel status={run.status} />
        {elapsed !== null && <span className="elapsed">{formatMs(Math.round(elapsed))}</span>}
      </span>
      {active && <button type="button" data-testid="cancel" onClick={() => onCancel(run.runId)}>Cancel</button>}
    </>
  );
}

const SPOKEN: Record<string, string> = {
  running: "Run started", succeeded: "Run succeeded", partial: "Run finished with failed nodes",
  failed: "Run failed", cancelled: "Run cancelled",
};

/** Screen-reader announcements: run transitions politely (never tokens), failures as alerts. */
export function Announcer({ store, labelOf }: { store: RunStore; labelOf: (id: string) => string }) {
  const run = useRun(store);
  const [polite, setPolite] = useState("");
  const [alert, setAlert] = useState("");
  const seen = useRef<{ runId: string | null; status: string | null; failed: Set<string> }>({ runId: null, status: null, failed: new Set() });

  useEffect(() => {
    if (!run) return;
    const s = seen.current;
    if (s.runId !== run.runId) {
      seen.current = { runId: run.runId, status: null, failed: new Set() };
    }
    const cur = seen.current;
    if (cur.status !== run.status) {
      cur.status = run.status;
      const text = SPOKEN[run.status];
      if (text) setPolite(text);
      if (run.status === "failed") setAlert(`Run failed${run.error ? `: ${run.error.message}` : ""}`);
    }
    for (const [id, node] of Object.entries(run.nodes)) {
      if (node.status === "failed" && !cur.failed.has(id)) {
        cur.failed.add(id);
        setAlert(`${labelOf(id)} failed${node.error ? `: ${node.error.message}` : ""}`);
      }
    }
  }, [run, labelOf]);

  return (
    <>
      <div role="status" aria-live="polite" className="sr-only">{polite}</div>
      <div role="alert" className={alert ? "run-alert" : "sr-only"}>{alert}</div>
    </>
  );
}
