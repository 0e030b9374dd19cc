import { useSyncExternalStore } from "react";
import type { Edge } from "@xyflow/react";
import { shownOutput } from "../lib/runState";
import { useEditor } from "./context";
import { formatMs, StatusLabel } from "./status";

/** The last run of one node: its inputs, output text, error, model and tokens. Text only. */
export function NodeRunPanel({ nodeId, edges, onRerun, showRerun }: {
  nodeId: string; edges: Edge[]; onRerun: (id: string) => void; showRerun: boolean;
}) {
  const { store, labelOf } = useEditor();
  const run = useSyncExternalStore(store.subscribe, () => store.getRun());
  const node = run?.nodes[nodeId];
  const parents = edges.filter((e) => e.target === nodeId).map((e) => e.source);
  return (
    <section className="node-run" aria-label="Last run of this node">
      <h3>Last run</h3>
      {showRerun && (
        <button type="button" data-testid="rerun-from-node" onClick={() => onRerun(nodeId)}>Re-run from this node…</button>
      )}
      {!node ? <p className="muted">This node has not run yet.</p> : (
        <dl>
          <dt>Status</dt>
          <dd><StatusLabel status={node.status} />{node.attempt !== null && node.attempt > 1 ? ` (attempt ${node.attempt})` : ""}</dd>
          {node.durationMs !== null && (<><dt>Duration</dt><dd>{formatMs(node.durationMs)}</dd></>)}
          {node.model && (<><dt>Model</dt><dd>{node.model}</dd></>)}
          {node.tokens && (<><dt>Tokens</dt><dd>{node.tokens.input} in · {node.tokens.output} out</dd></>)}
          {node.skippedBecause && (<><dt>Skipped because</dt><dd>{labelOf(node.skippedBecause)}</dd></>)}
          {node.error && (<><dt>Error</dt><dd className="error-text">{node.error.code}: {node.error.message}</dd></>)}
          <dt>Inputs</dt>
          <dd>
            {parents.length === 0 ? <span className="muted">none</span> : parents.map((p) => (
              <details key={p}>
                <summary>from {labelOf(p)}</summary>
                <pre className="text-block">{shownOutput(run?.nodes[p]) || "(no text)"}</pre>
              </details>
            ))}
          </dd>
          <dt>Output</dt>
          <dd><pre className="text-block">{shownOutput(node) || "(no text)"}</pre></dd>
          {node.outputData && Object.keys(node.outputData).length > 0 && (
            <><dt>Data</dt><dd><pre className="text-block">{JSON.stringify(node.outputData, null, 2)}</pre></dd></>
          )}
        </dl>
      )}
    </section>
  );
}
