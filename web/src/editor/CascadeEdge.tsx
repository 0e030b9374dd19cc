import { memo, useLayoutEffect, useRef, useSyncExternalStore } from "react";
import { BaseEdge, EdgeLabelRenderer, getBezierPath, useStoreApi, type EdgeProps } from "@xyflow/react";
import { portKind } from "../lib/catalog";
import { useEditor } from "./context";

/** Every edge: text and adapter edges drawn differently, animated while its target runs. */
export const CascadeEdge = memo(function CascadeEdge(props: EdgeProps) {
  const { id, source, target, sourceHandleId, targetHandleId, sourceX, sourceY, targetX, targetY,
          sourcePosition, targetPosition, markerEnd, selected } = props;
  const { store, catalog, problemsByEdge } = useEditor();
  const targetStatus = useSyncExternalStore(store.subscribe, () => store.node(target)?.status);
  // Read, not subscribed: a node's type never changes, and a subscription per edge is one
  // more selector run on every React Flow store update (each resize, each drag step) for
  // every edge, a thousand edges in the benchmark's flow.
  const { nodeLookup } = useStoreApi().getState();
  const targetType = nodeLookup.get(target)?.type;
  const sourceType = nodeLookup.get(source)?.type;
  const ref = useRef<SVGGElement>(null);
  const running = targetStatus === "running";
  const [path, labelX, labelY] = getBezierPath({ sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition });
  const problems = problemsByEdge.get(id);
  // The target port decides the kind, else the source port, as on the server (graph/edges.py).
  const kind = (targetHandleId ? portKind(targetType ? catalog.get(targetType) : undefined, targetHandleId, "input") : null)
    ?? portKind(sourceType ? catalog.get(sourceType) : undefined, sourceHandleId, "output") ?? "text";

  // React Flow owns the edge's <g>; its `animated` class is what its own animated edges use.
  useLayoutEffect(() => {
    const wrapper = ref.current?.closest(".react-flow__edge");
    if (!wrapper) return;
    wrapper.classList.toggle("animated", running);
    wrapper.classList.toggle("edge-adapter", kind === "adapter");
    wrapper.classList.toggle("has-problem", Boolean(problems));
  });

  return (
    <g ref={ref}>
      <BaseEdge id={id} path={path} markerEnd={markerEnd}
                className={`cedge cedge-${kind}${running ? " cedge-running" : ""}${selected ? " cedge-selected" : ""}`} />
      {problems && (
        <EdgeLabelRenderer>
          <div className="edge-problem nodrag nopan" style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}>
            ⚠ {problems.map((p) => p.message).join("; ")}
          </div>
        </EdgeLabelRenderer>
      )}
    </g>
  );
});
