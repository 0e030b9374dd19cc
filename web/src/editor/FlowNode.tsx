import { memo, useLayoutEffect, useRef, useSyncExternalStore } from "react";
import { Handle, Position, type NodeProps } from "@xyflow/react";
import { shownOutput } from "../lib/runState";
import { useEditor } from "./context";
import { formatMs, StatusLabel } from "./status";

function setAttr(el: HTMLElement, name: string, value: string | null): void {
  if (value === null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/** One node on the canvas. Its run state comes from the run store, not from node data, so
 *  the graph React Flow holds (and toObject() saves) stays the drawn graph only. */
export const FlowNode = memo(function FlowNode({ id, type, data, selected }: NodeProps) {
  const { store, catalog, rerun, stale, problemsByNode, labelOf } = useEditor();
  const run = useSyncExternalStore(store.subscribe, () => store.node(id));
  const component = catalog.get(type);
  const ref = useRef<HTMLDivElement>(null);
  const mark = rerun?.get(id) ?? null;
  const isStale = stale.has(id);
  const problems = problemsByNode.get(id);

  // The test hooks live on React Flow's own node element (rf__node-<id>).
  useLayoutEffect(() => {
    const wrapper = ref.current?.closest<HTMLElement>(".react-flow__node");
    if (!wrapper) return;
    setAttr(wrapper, "data-status", run ? run.status : null);
    setAttr(wrapper, "data-duration-ms", run && run.durationMs !== null ? String(run.durationMs) : null);
    setAttr(wrapper, "data-attempt", run && run.attempt !== null ? String(run.attempt) : null);
    setAttr(wrapper, "data-stale", isStale ? "true" : null);
    setAttr(wrapper, "data-rerun", mark);
  });

  const inputs = component?.ports.filter((p) => p.direction === "input") ?? [];
  const outputs = component?.ports.filter((p) => p.direction === "output") ?? [];
  const label = typeof data.label === "string" && data.label ? data.label : component?.name ?? type;
  const output = shownOutput(run);
  const done = run && ["completed", "failed", "cancelled"].includes(run.status);

  return (
    <div ref={ref} className={`cnode${selected ? " selected" : ""}${run ? ` st-${run.status}` : ""}${mark ? ` rerun-${mark}` : ""}${problems ? " has-problem" : ""}`}>
      {inputs.map((p, i) => (
        <Handle key={p.name} id={p.name} type="target" position={Position.Left}
                className={`port port-${p.kind}`} style={{ top: `${((i + 1) * 100) / (inputs.length + 1)}%` }}
                title={`${p.name} (${p.kind})`} />
      ))}
      <div className="cnode-head">
        <span className="cnode-title">{label}</span>
        <span className="cnode-type">{component?.name ?? `unknown type ${type}`}</span>
      </div>
      <div className="cnode-ports">
        <span>{inputs.map((p) => <span key={p.name} className={`port-label port-label-${p.kind}`}>{p.name}</span>)}</span>
        <span>{outputs.map((p) => <span key={p.name} className={`port-label port-label-${p.kind}`}>{p.name}</span>)}</span>
      </div>
      {(run || mark || isStale) && (
        <div className="cnode-status">
          {run && <StatusLabel status={run.status} />}
          {run && run.attempt !== null && run.attempt > 1 && <span className="badge">attempt {run.attempt}{run.maxAttempts ? ` of ${run.maxAttempts}` : ""}</span>}
          {run?.status === "cached" && <span className="badge badge-cached">cached</span>}
          {done && run?.durationMs !== null && run?.durationMs !== undefined && <span className="badge">{formatMs(run.durationMs)}</span>}
          {isStale && <span className="badge badge-stale" title="changed since its last run">stale</span>}
          {mark && <span className={`badge badge-${mark}`}>{mark === "will-run" ? "will run" : "from cache"}</span>}
        </div>
      )}
      {run?.status === "skipped" && (
        <p className="cnode-note">skipped because {run.skippedBecause ? labelOf(run.skippedBecause) : "an upstream node failed"}</p>
      )}
      {run?.status === "failed" && run.error && (
        <p className="cnode-error" data-testid={`node-error-${id}`}>{run.error.message || run.error.code}</p>
      )}
      {problems?.map((p, i) => <p key={i} className="cnode-problem">⚠ {p.message}</p>)}
      {run && (
        <pre className="cnode-output nowheel" data-testid={`node-output-${id}`}>{output}</pre>
      )}
      {outputs.map((p, i) => (
        <Handle key={p.name} id={p.name} type="source" position={Position.Right}
                className={`port port-${p.kind}`} style={{ top: `${((i + 1) * 100) / (outputs.length + 1)}%` }}
                title={`${p.name} (${p.kind})`} />
      ))}
    </div>
  );
});
