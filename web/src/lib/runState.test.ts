import { describe, expect, it } from "vitest";
import { fromLogRow, fromTunnel, type LogEvent } from "./events";
import { applyRunEvent, applyRunEvents, NodeBatch, newRun, runFromEvents, shownOutput } from "./runState";

const RUN = "11111111-1111-1111-1111-111111111111";
let seq = 0;
function ev(type: string, data: Record<string, unknown>, persisted = true): LogEvent {
  if (persisted) seq += 1;
  return { type, cursor: persisted ? 100 + seq : null, runId: RUN, runSeq: persisted ? seq : null, ts: null, data: { run_id: RUN, ...data } };
}

function happyRun(): LogEvent[] {
  seq = 0;
  return [
    ev("execution.started", { flow_id: "f", node_ids: ["a", "b", "c"], trigger_node_id: null }),
    ev("execution.node.status", { node_id: "a", status: "pending" }),
    ev("execution.node.status", { node_id: "b", status: "pending" }),
    ev("execution.node.status", { node_id: "c", status: "pending" }),
    ev("execution.node.status", { node_id: "a", status: "running", attempt: 1, max_attempts: 3, model: "echo-1" }),
    ev("execution.node.stream", { node_id: "a", attempt: 1, delta: "Hel" }, false),
    ev("execution.node.stream", { node_id: "a", attempt: 1, delta: "lo" }, false),
    ev("execution.node.completed", { node_id: "a", status: "completed", output: { text: "Hello", data: {} }, duration_ms: 12, model: "echo-1", tokens: { input: 1, output: 1 }, attempt: 1 }),
    ev("execution.node.status", { node_id: "b", status: "running", attempt: 1 }),
    ev("execution.node.failed", { node_id: "b", status: "failed", error: { code: "executor_error", message: "boom" }, attempt: 1, duration_ms: 3 }),
    ev("execution.node.status", { node_id: "c", status: "skipped", skipped_because: "b" }),
    ev("execution.completed", { status: "partial", failed_node_ids: ["b"], skipped_node_ids: ["c"] }),
  ];
}

describe("the event → node-state reducer", () => {
  it("follows a run to its end", () => {
    const run = runFromEvents(RUN, happyRun());
    expect(run.status).toBe("partial");
    expect(run.flowId).toBe("f");
    expect(run.nodeIds).toEqual(["a", "b", "c"]);
    expect(run.nodes.a).toMatchObject({ status: "completed", output: "Hello", durationMs: 12, model: "echo-1", tokens: { input: 1, output: 1 }, attempt: 1 });
    expect(run.nodes.b).toMatchObject({ status: "failed", error: { code: "executor_error", message: "boom" }, durationMs: 3 });
    expect(run.nodes.c).toMatchObject({ status: "skipped", skippedBecause: "b" });
  });

  it("streams text while running and shows the final text when done", () => {
    const events = happyRun();
    let run = newRun(RUN);
    for (const e of events.slice(0, 7)) run = applyRunEvent(run, e);
    expect(run.nodes.a?.status).toBe("running");
    expect(shownOutput(run.nodes.a)).toBe("Hello");
    run = applyRunEvent(run, events[7] as LogEvent);
    expect(shownOutput(run.nodes.a)).toBe("Hello");
    expect(shownOutput(run.nodes.b)).toBe("");
  });

  it("drops a failed attempt's streamed text", () => {
    seq = 0;
    let run = newRun(RUN);
    for (const e of [
      ev("execution.started", { node_ids: ["a"] }),
      ev("execution.node.status", { node_id: "a", status: "pending" }),
      ev("execution.node.status", { node_id: "a", status: "running", attempt: 1, max_attempts: 3 }),
      ev("execution.node.stream", { node_id: "a", attempt: 1, delta: "first try" }, false),
      ev("execution.node.status", { node_id: "a", status: "running", attempt: 2, max_attempts: 3 }),
      ev("execution.node.stream", { node_id: "a", attempt: 1, delta: " late" }, false),
      ev("execution.node.stream", { node_id: "a", attempt: 2, delta: "second" }, false),
    ]) run = applyRunEvent(run, e);
    expect(run.nodes.a).toMatchObject({ status: "running", attempt: 2, maxAttempts: 3 });
    expect(shownOutput(run.nodes.a)).toBe("second");
  });

  it("keeps stream text that arrives just before its running event", () => {
    seq = 0;
    let run = newRun(RUN);
    for (const e of [
      ev("execution.node.status", { node_id: "a", status: "pending" }),
      ev("execution.node.stream", { node_id: "a", attempt: 1, delta: "early " }, false),
      ev("execution.node.status", { node_id: "a", status: "running", attempt: 1 }),
      ev("execution.node.stream", { node_id: "a", attempt: 1, delta: "text" }, false),
    ]) run = applyRunEvent(run, e);
    expect(shownOutput(run.nodes.a)).toBe("early text");
  });

  it("is idempotent over a replay overlap (run_seq)", () => {
    const events = happyRun();
    const once = runFromEvents(RUN, events);
    const twice = runFromEvents(RUN, [...events.slice(0, 8), ...events]);
    expect(twice).toEqual(once);
  });

  it("ignores other runs' events and unknown types", () => {
    const run = newRun(RUN);
    const other: LogEvent = { type: "execution.started", cursor: 1, runId: "other", runSeq: 1, ts: null, data: {} };
    expect(applyRunEvent(run, other)).toBe(run);
    const unknown: LogEvent = { type: "execution.node.progress", cursor: null, runId: RUN, runSeq: null, ts: null, data: { node_id: "a" } };
    expect(applyRunEvent(run, unknown)).toBe(run);
  });

  it("records cached and cancelled nodes and a cancelled run", () => {
    seq = 0;
    const run = runFromEvents(RUN, [
      ev("execution.started", { node_ids: ["a", "b"], trigger_node_id: "b" }),
      ev("execution.node.status", { node_id: "a", status: "pending" }),
      ev("execution.node.status", { node_id: "b", status: "pending" }),
      ev("execution.node.status", { node_id: "a", status: "cached", output: { text: "old", data: {} } }),
      ev("execution.node.status", { node_id: "b", status: "cancelled", reason: "interrupted" }),
      ev("execution.cancelled", { cancelled_node_ids: ["b"] }),
    ]);
    expect(run.triggerNodeId).toBe("b");
    expect(run.nodes.a).toMatchObject({ status: "cached", output: "old" });
    expect(run.nodes.b).toMatchObject({ status: "cancelled", reason: "interrupted" });
    expect(run.status).toBe("cancelled");
  });

  it("reads tunnel frames and log rows into the same event", () => {
    const frame = fromTunnel({ type: "execution.node.status", cursor: 7, ts: "2026-01-01T00:00:00Z", data: { run_id: RUN, run_seq: 3, node_id: "a", status: "running" } });
    const row = fromLogRow({ type: "execution.node.status", user_seq: 7, run_id: RUN, run_seq: 3, created_at: "2026-01-01T00:00:00Z", payload: { node_id: "a", status: "running" } });
    expect(frame).toEqual(row);
    expect(fromTunnel("nope")).toBeNull();
    expect(fromLogRow({ payload: {} })).toBeNull();
  });

  it("gives the same state applied as one batch as applied one event at a time", () => {
    const events = happyRun();
    let oneByOne = newRun(RUN);
    for (const e of events) oneByOne = applyRunEvent(oneByOne, e);
    for (let cut = 0; cut <= events.length; cut += 1) {
      // Any split into two batches, as frames would split a burst.
      const batched = applyRunEvents(applyRunEvents(newRun(RUN), events.slice(0, cut)), events.slice(cut));
      expect(batched).toEqual(oneByOne);
    }
  });

  it("never changes a RunView it was given, and keeps unchanged nodes' objects", () => {
    const events = happyRun();
    const before = runFromEvents(RUN, events.slice(0, 4));
    const nodesBefore = before.nodes;
    const copy = structuredClone(before);
    const after = applyRunEvents(before, events.slice(4, 8));
    expect(before).toEqual(copy);
    expect(before.nodes).toBe(nodesBefore);
    expect(after.nodes).not.toBe(before.nodes);
    expect(after.nodes.a).not.toBe(before.nodes.a);
    expect(after.nodes.b).toBe(before.nodes.b);
    expect(after.nodes.c).toBe(before.nodes.c);
  });

  it("copies another run's node map instead of writing into it within one batch", () => {
    seq = 0;
    const batch = new NodeBatch();
    const first = applyRunEvent(newRun(RUN), ev("execution.node.status", { node_id: "a", status: "pending" }), batch);
    const other = { ...newRun(RUN), nodes: { z: first.nodes.a! } };
    const next = applyRunEvent(other, ev("execution.node.status", { node_id: "b", status: "pending" }), batch);
    expect(Object.keys(first.nodes)).toEqual(["a"]);
    expect(Object.keys(other.nodes)).toEqual(["z"]);
    expect(Object.keys(next.nodes).sort()).toEqual(["b", "z"]);
  });
});
