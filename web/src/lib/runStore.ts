// The run being shown on the canvas. Tunnel events are queued and applied once per
// animation frame (a burst of a thousand node events is one render); components subscribe
// and re-render only when the node they show has changed.
import type { LogEvent } from "./events";
import { applyRunEvent, applyRunEvents, NodeBatch, newRun, type NodeRun, type RunView } from "./runState";

type Listener = () => void;

const BUFFER_RUNS = 8; // runs whose early events are kept until the page adopts one

export class RunStore {
  run: RunView | null = null;
  /** The flow whose runs this canvas adopts when their execution.started arrives. */
  flowId: string | null = null;
  /** When true (a past run is shown) live runs are not adopted. */
  pinned = false;
  private listeners = new Set<Listener>();
  private queue: LogEvent[] = [];
  private scheduled = false;
  private buffered = new Map<string, LogEvent[]>();
  private frame: (cb: () => void) => void;

  constructor(frame?: (cb: () => void) => void) {
    this.frame = frame ?? defaultFrame;
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getRun = (): RunView | null => this.run;

  node(id: string): NodeRun | undefined {
    return this.run?.nodes[id];
  }

  push(ev: LogEvent): void {
    this.queue.push(ev);
    if (this.scheduled) return;
    this.scheduled = true;
    this.frame(() => this.flush());
  }

  /** Applies every queued event now (also what the animation frame calls). */
  flush(): void {
    this.scheduled = false;
    const events = this.queue;
    this.queue = [];
    const before = this.run;
    // One batch per frame: the node map is copied once per frame, not once per event.
    const batch = new NodeBatch();
    for (const ev of events) this.apply(ev, batch);
    if (this.run !== before) this.notify();
  }

  private apply(ev: LogEvent, batch: NodeBatch): void {
    if (!ev.runId) return;
    if (ev.type === "execution.started" && !this.pinned && this.flowId !== null
        && ev.data.flow_id === this.flowId && this.run?.runId !== ev.runId) {
      this.run = this.replayBuffered(newRun(ev.runId, this.flowId));
    }
    if (this.run && ev.runId === this.run.runId) {
      this.run = applyRunEvent(this.run, ev, batch);
      return;
    }
    this.remember(ev);
  }

  private remember(ev: LogEvent): void {
    if (!ev.runId) return;
    let list = this.buffered.get(ev.runId);
    if (!list) {
      list = [];
      this.buffered.set(ev.runId, list);
      if (this.buffered.size > BUFFER_RUNS) {
        const oldest = this.buffered.keys().next().value;
        if (oldest !== undefined) this.buffered.delete(oldest);
      }
    }
    if (list.length < 20_000) list.push(ev);
  }

  private replayBuffered(run: RunView): RunView {
    return applyRunEvents(run, this.buffered.get(run.runId) ?? []);
  }

  /** Shows `run` (built from the log or just accepted), then applies what arrived live. */
  show(run: RunView | null): void {
    this.run = run ? this.replayBuffered(run) : null;
    this.notify();
  }

  /** Adopts a run the page itself started (execution.accepted may precede its events). */
  adopt(runId: string, status: string): void {
    if (this.run?.runId === runId) return;
    const run = newRun(runId, this.flowId);
    run.status = status;
    this.show(run);
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }
}

function defaultFrame(cb: () => void): void {
  // requestAnimationFrame does not fire in a hidden tab; the timer keeps events flowing.
  let done = false;
  const once = () => {
    if (!done) {
      done = true;
      cb();
    }
  };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(once);
  setTimeout(once, 250);
}
