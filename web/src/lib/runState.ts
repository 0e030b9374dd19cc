// The event → node-state reducer. The server owns every status: this module only records
// what events say (DESIGN.md §5, §6) and never guesses a status it has not been told.
import { isRecord, num, str, type LogEvent } from "./events";

export interface NodeRun {
  status: string;
  attempt: number | null;
  maxAttempts: number | null;
  durationMs: number | null;
  /** The node's text output (completed or cached). */
  output: string | null;
  outputData: Record<string, unknown> | null;
  /** Streamed text of the current attempt (while running). */
  stream: string;
  streamAttempt: number | null;
  error: { code: string; message: string } | null;
  skippedBecause: string | null;
  reason: string | null;
  model: string | null;
  tokens: { input: number; output: number } | null;
}

export interface RunView {
  runId: string;
  flowId: string | null;
  /** The run status: running, then succeeded / partial / failed / cancelled. */
  status: string;
  triggerNodeId: string | null;
  nodeIds: string[];
  startedAt: string | null;
  finishedAt: string | null;
  error: { code: string; message: string } | null;
  lastRunSeq: number;
  nodes: Record<string, NodeRun>;
}

export const TERMINAL_RUN = new Set(["succeeded", "partial", "failed", "cancelled"]);

export function emptyNode(status: string): NodeRun {
  return {
    status, attempt: null, maxAttempts: null, durationMs: null, output: null, outputData: null,
    stream: "", streamAttempt: null, error: null, skippedBecause: null, reason: null,
    model: null, tokens: null,
  };
}

export function newRun(runId: string, flowId: string | null = null): RunView {
  return {
    runId, flowId, status: "queued", triggerNodeId: null, nodeIds: [], startedAt: null,
    finishedAt: null, error: null, lastRunSeq: 0, nodes: {},
  };
}

function errorOf(value: unknown): { code: string; message: string } | null {
  if (!isRecord(value)) return null;
  return { code: str(value.code) ?? "error", message: str(value.message) ?? "" };
}

function tokensOf(value: unknown): { input: number; output: number } | null {
  if (!isRecord(value)) return null;
  return { input: num(value.input) ?? 0, output: num(value.output) ?? 0 };
}

function outputOf(value: unknown): { text: string | null; data: Record<string, unknown> | null } {
  if (!isRecord(value)) return { text: null, data: null };
  return { text: str(value.text), data: isRecord(value.data) ? value.data : null };
}

/**
 * The node map a batch of events writes to. The first node change of a batch copies the run's
 * map, later ones write into that copy: a batch of k events over n nodes costs O(n + k)
 * instead of copying the whole map per event, O(n·k) (a 1,000-node run is ~3,000 node events;
 * the copies and their garbage were a fifth of the page's main-thread time). The copy is never
 * shared outside the batch until the batch ends, so RunViews seen by React stay immutable;
 * only the nodes an event changed get a new object (what FlowNode's subscription compares).
 */
export class NodeBatch {
  owned: Record<string, NodeRun> | null = null;
}

/**
 * Applies one event of `run` and returns the new RunView (the same object when nothing
 * changed). Persisted events older than what was applied (a replay overlap) are ignored by
 * run_seq, so applying the log twice gives the same state. Pass one `batch` for a series of
 * events whose intermediate RunViews nobody keeps (see NodeBatch); without one the event is
 * applied on its own.
 */
export function applyRunEvent(run: RunView, ev: LogEvent, batch: NodeBatch = new NodeBatch()): RunView {
  if (ev.runId !== run.runId) return run;
  if (ev.runSeq !== null) {
    if (ev.runSeq <= run.lastRunSeq) return run;
  }
  const next = reduce(run, ev, batch);
  if (ev.runSeq === null) return next;
  return { ...next, lastRunSeq: ev.runSeq };
}

/** Applies `events` in order as one batch (one copy of the node map at most). */
export function applyRunEvents(run: RunView, events: Iterable<LogEvent>): RunView {
  const batch = new NodeBatch();
  let next = run;
  for (const ev of events) next = applyRunEvent(next, ev, batch);
  return next;
}

function withNode(run: RunView, nodeId: string, update: (node: NodeRun) => NodeRun, batch: NodeBatch): RunView {
  // Only a map this batch copied is written in place; any other (the run's own, or another
  // run's after the store switched runs mid-batch) is copied first.
  let nodes = run.nodes;
  if (nodes !== batch.owned) {
    nodes = { ...nodes };
    batch.owned = nodes;
  }
  nodes[nodeId] = update(nodes[nodeId] ?? emptyNode("pending"));
  return { ...run, nodes };
}

function reduce(run: RunView, ev: LogEvent, batch: NodeBatch): RunView {
  const d = ev.data;
  const nodeId = str(d.node_id);
  switch (ev.type) {
    case "execution.started":
      return {
        ...run,
        status: "running",
        flowId: str(d.flow_id) ?? run.flowId,
        triggerNodeId: str(d.trigger_node_id),
        nodeIds: Array.isArray(d.node_ids) ? d.node_ids.filter((x): x is string => typeof x === "string") : run.nodeIds,
        startedAt: ev.ts ?? run.startedAt,
      };
    case "execution.node.status": {
      if (!nodeId) return run;
      const status = str(d.status);
      if (!status) return run;
      return withNode(run, nodeId, (node) => {
        const attempt = num(d.attempt);
        const next: NodeRun = { ...node, status };
        if (status === "running") {
          // A new attempt starts from an empty stream: a failed attempt's text is dropped.
          if (attempt !== null && attempt !== node.streamAttempt) {
            next.stream = "";
            next.streamAttempt = attempt;
          }
          next.attempt = attempt ?? node.attempt;
          next.maxAttempts = num(d.max_attempts) ?? node.maxAttempts;
          next.model = str(d.model) ?? node.model;
          next.error = null;
        } else if (status === "cached") {
          const out = outputOf(d.output);
          next.output = out.text;
          next.outputData = out.data;
        } else if (status === "skipped") {
          next.skippedBecause = str(d.skipped_because);
        } else if (status === "cancelled") {
          next.reason = str(d.reason);
        }
        return next;
      }, batch);
    }
    case "execution.node.completed": {
      if (!nodeId) return run;
      return withNode(run, nodeId, (node) => {
        const out = outputOf(d.output);
        return {
          ...node, status: "completed", output: out.text, outputData: out.data,
          durationMs: num(d.duration_ms), model: str(d.model) ?? node.model,
          tokens: tokensOf(d.tokens), attempt: num(d.attempt) ?? node.attempt, error: null,
        };
      }, batch);
    }
    case "execution.node.failed": {
      if (!nodeId) return run;
      return withNode(run, nodeId, (node) => ({
        ...node, status: "failed", error: errorOf(d.error),
        durationMs: num(d.duration_ms), attempt: num(d.attempt) ?? node.attempt,
      }), batch);
    }
    case "execution.node.stream": {
      if (!nodeId) return run;
      const delta = str(d.delta);
      if (!delta) return run;
      const node = run.nodes[nodeId];
      // Text after the node ended is late; the final output is authoritative.
      if (node && node.status !== "running" && node.status !== "pending") return run;
      const attempt = num(d.attempt) ?? node?.attempt ?? null;
      return withNode(run, nodeId, (n) => {
        if (attempt !== null && n.attempt !== null && attempt < n.attempt) return n; // stale
        if (attempt !== null && attempt !== n.streamAttempt) {
          return { ...n, stream: delta, streamAttempt: attempt };
        }
        return { ...n, stream: n.stream + delta };
      }, batch);
    }
    case "execution.completed":
      return { ...run, status: str(d.status) ?? "succeeded", finishedAt: ev.ts ?? run.finishedAt };
    case "execution.failed":
      return { ...run, status: "failed", error: errorOf(d.error), finishedAt: ev.ts ?? run.finishedAt };
    case "execution.cancelled":
      return { ...run, status: "cancelled", finishedAt: ev.ts ?? run.finishedAt };
    default:
      return run;
  }
}

/** Rebuilds a run from its events alone (GET /events?run_id=…), oldest first. */
export function runFromEvents(runId: string, events: LogEvent[]): RunView {
  return applyRunEvents(newRun(runId), events);
}

/** The text a node's output panel shows: the final text, else what streamed so far. */
export function shownOutput(node: NodeRun | undefined): string {
  if (!node) return "";
  if (node.output !== null) return node.output;
  return node.status === "running" ? node.stream : "";
}
