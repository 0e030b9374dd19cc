import { describe, expect, it } from "vitest";
import type { LogEvent } from "./events";
import { RunStore } from "./runStore";

function manualFrames() {
  const pending: (() => void)[] = [];
  return { frame: (cb: () => void) => pending.push(cb), run: () => pending.splice(0).forEach((cb) => cb()), count: () => pending.length };
}

const ev = (runId: string, seq: number, type: string, data: Record<string, unknown>): LogEvent =>
  ({ type, cursor: seq, runId, runSeq: seq, ts: null, data: { run_id: runId, ...data } });

describe("the run store", () => {
  it("applies a burst of events in one frame with one notification", () => {
    const frames = manualFrames();
    const store = new RunStore(frames.frame);
    store.flowId = "f";
    let notified = 0;
    store.subscribe(() => { notified += 1; });
    store.push(ev("r", 1, "execution.started", { flow_id: "f", node_ids: ["a"] }));
    for (let i = 0; i < 500; i += 1) store.push(ev("r", 2 + i, "execution.node.status", { node_id: `n${i}`, status: "pending" }));
    expect(frames.count()).toBe(1);
    expect(store.run).toBeNull();
    frames.run();
    expect(notified).toBe(1);
    expect(store.run?.runId).toBe("r");
    expect(Object.keys(store.run?.nodes ?? {})).toHaveLength(500);
  });

  it("adopts a run accepted before its events and replays early events", () => {
    const frames = manualFrames();
    const store = new RunStore(frames.frame);
    store.flowId = "f";
    store.push(ev("other", 1, "execution.node.status", { node_id: "x", status: "pending" }));
    store.push(ev("r2", 2, "execution.node.status", { node_id: "a", status: "pending" }));
    frames.run();
    store.adopt("r2", "queued");
    expect(store.run?.nodes.a?.status).toBe("pending");
    store.push(ev("r2", 3, "execution.node.status", { node_id: "a", status: "running", attempt: 1 }));
    frames.run();
    expect(store.node("a")?.status).toBe("running");
  });

  it("does not adopt live runs while a past run is pinned", () => {
    const frames = manualFrames();
    const store = new RunStore(frames.frame);
    store.flowId = "f";
    store.pinned = true;
    store.push(ev("r", 1, "execution.started", { flow_id: "f" }));
    frames.run();
    expect(store.run).toBeNull();
  });

  it("leaves the RunView of an earlier frame as it was (React may still hold it)", () => {
    const frames = manualFrames();
    const store = new RunStore(frames.frame);
    store.flowId = "f";
    store.push(ev("r", 1, "execution.started", { flow_id: "f" }));
    store.push(ev("r", 2, "execution.node.status", { node_id: "a", status: "pending" }));
    frames.run();
    const seen = store.run;
    const seenA = store.node("a");
    store.push(ev("r", 3, "execution.node.status", { node_id: "a", status: "running", attempt: 1 }));
    store.push(ev("r", 4, "execution.node.status", { node_id: "b", status: "pending" }));
    frames.run();
    expect(seen?.nodes.a?.status).toBe("pending");
    expect(seen?.nodes.b).toBeUndefined();
    expect(store.node("a")).not.toBe(seenA);
    expect(store.node("a")?.status).toBe("running");
  });

  it("switches to a new run within one frame without carrying the old run's nodes", () => {
    const frames = manualFrames();
    const store = new RunStore(frames.frame);
    store.flowId = "f";
    store.push(ev("r1", 1, "execution.started", { flow_id: "f" }));
    store.push(ev("r1", 2, "execution.node.status", { node_id: "a", status: "running", attempt: 1 }));
    store.push(ev("r2", 3, "execution.started", { flow_id: "f" }));
    store.push(ev("r2", 4, "execution.node.status", { node_id: "b", status: "pending" }));
    frames.run();
    expect(store.run?.runId).toBe("r2");
    expect(Object.keys(store.run?.nodes ?? {})).toEqual(["b"]);
  });
});

