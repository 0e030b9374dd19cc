import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type DragEvent, type MouseEvent as ReactMouseEvent } from "react";
import {
  addEdge, Background, Controls, MiniMap, ReactFlow, ReactFlowProvider, useEdgesState, useNodesState, useReactFlow,
  type Connection, type Edge, type EdgeChange, type IsValidConnection, type Node, type NodeChange, type NodeTypes,
  type OnSelectionChangeParams, type ReactFlowInstance,
} from "@xyflow/react";
import { api, errorMessage, type Flow } from "../api/client";
import { Header } from "../app/Header";
import { tunnel } from "../app/tunnel";
import { defaultConfig, isCompatible, parseCatalog, type Component } from "../lib/catalog";
import { isRecord, str } from "../lib/events";
import { fromGraphData, nextNodeId } from "../lib/graph";
import { rerunSet } from "../lib/rerun";
import { RunStore } from "../lib/runStore";
import { Link } from "../lib/Link";
import { navigate, useLocation } from "../lib/router";
import { changedNodes, snapshot, staleFrom, type Snapshot } from "../lib/stale";
import { CascadeEdge } from "./CascadeEdge";
import { ConfigPanel } from "./ConfigPanel";
import { EditorContext, type EditorContextValue, type Problem } from "./context";
import { FlowNode } from "./FlowNode";
import { RunHistory } from "./History";
import { NodeRunPanel } from "./NodePanel";
import { DRAG_TYPE, Palette } from "./Palette";
import { Announcer, RunBadge } from "./RunBar";
import { latestRunId, loadRun, readSnapshot, saveSnapshot } from "./runs";

const edgeTypes = { default: CascadeEdge };
// Props of <ReactFlow> that must keep their identity: a new value on any editor render makes
// React Flow write it to its store, which runs every node's and edge's store selectors.
const DELETE_KEYS = ["Backspace", "Delete"];
const FIT_VIEW_OPTIONS = { maxZoom: 1 };
const NO_IDS: string[] = [];
const NO_NODES: Set<string> = new Set();

export function EditorPage({ flowId, runId }: { flowId: string; runId: string | null }) {
  const [flow, setFlow] = useState<Flow | null>(null);
  const [catalog, setCatalog] = useState<Component[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    void Promise.all([
      api.GET("/api/v1/flows/{flow_id}", { params: { path: { flow_id: flowId } } }),
      api.GET("/api/v1/components"),
    ]).then(([f, c]) => {
      if (!live) return;
      if (!f.data) return setError(errorMessage(f.error, "this flow could not be loaded"));
      setFlow(f.data);
      setCatalog(parseCatalog(c.data));
    });
    return () => {
      live = false;
    };
  }, [flowId]);

  if (error) return (<><Header /><main className="centered"><p role="alert">{error}</p><Link to="/">Back to your flows</Link></main></>);
  if (!flow || !catalog) return (<><Header /><p className="centered">Loading the flow…</p></>);
  return (
    <ReactFlowProvider>
      <Editor flow={flow} components={catalog} runId={runId} />
    </ReactFlowProvider>
  );
}

function Editor({ flow, components, runId }: { flow: Flow; components: Component[]; runId: string | null }) {
  const initial = useMemo(() => fromGraphData(flow.graph_data), [flow]);
  const [nodes, setNodes, onNodesChangeBase] = useNodesState<Node>(initial.nodes);
  const [edges, setEdges, onEdgesChangeBase] = useEdgesState<Edge>(initial.edges);
  const [name, setName] = useState(flow.name);
  const [version, setVersion] = useState(0);
  const [savedVersion, setSavedVersion] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);
  const [runError, setRunError] = useState<string | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [menu, setMenu] = useState<{ id: string; x: number; y: number } | null>(null);
  const [rerunTrigger, setRerunTrigger] = useState<string | null>(null);
  const [showHistory, setShowHistory] = useState(runId !== null);
  const [snapshots, setSnapshots] = useState<Map<string, Snapshot>>(() => new Map());
  const rf = useReactFlow();
  const canvasRef = useRef<HTMLDivElement>(null);
  const { search } = useLocation();
  const dirty = version !== savedVersion;
  const touch = useCallback(() => setVersion((v) => v + 1), []);

  const store = useMemo(() => new RunStore(), []);
  store.flowId = flow.id;
  const adoptedAt = useMemo(() => new Map<string, number>(), []);
  const catalog = useMemo(() => new Map(components.map((c) => [c.type, c])), [components]);
  const nodeTypes = useMemo<NodeTypes>(() => {
    const types: NodeTypes = {};
    for (const c of components) types[c.type] = FlowNode;
    for (const n of initial.nodes) if (n.type) types[n.type] = FlowNode;
    types.default = FlowNode;
    return types;
  }, [components, initial]);

  // Live events into the store (applied once per animation frame).
  useEffect(() => tunnel.onEvent((ev) => store.push(ev)), [store]);

  // Which run the canvas shows: the one in the URL (pinned), else the flow's latest.
  useEffect(() => {
    let live = true;
    store.pinned = runId !== null;
    if (runId !== null) {
      store.show(null);
      void loadRun(runId).then((run) => {
        if (live && run) store.show(run);
        else if (live) setRunError("this run could not be loaded");
      });
    } else {
      if (store.run && !store.run.flowId) store.show(null);
      void latestRunId(flow.id).then(async (id) => {
        if (!id || !live || store.run) return;
        const run = await loadRun(id);
        const shown = store.getRun();
        if (live && run && (!shown || shown.runId === run.runId)) store.show(run);
      });
    }
    return () => {
      live = false;
    };
  }, [runId, flow.id, store]);

  const currentRunId = useSyncExternalStore(store.subscribe, () => store.run?.runId ?? null);
  const runStatus = useSyncExternalStore(store.subscribe, () => store.run?.status ?? null);

  const labelOf = useCallback((id: string) => {
    const n = rf.getNode(id);
    const label = n && isRecord(n.data) ? str(n.data.label) : null;
    return label || id;
  }, [rf]);

  // Stale markers: configs changed since the shown run's snapshot, and their descendants.
  // The changed configs depend on the graph only; while none changed (always, during a run
  // started from here) the editor does not follow the run's nodes at all, so a run's events
  // re-render only the nodes they touch, not the editor and React Flow with it.
  const dataKey = useStableDataKey(nodes);
  const changed = useMemo(() => {
    if (!currentRunId) return NO_IDS;
    const snap = snapshots.get(currentRunId) ?? readSnapshot(currentRunId);
    return snap ? changedNodes(snap, snapshot(nodes, edges)) : NO_IDS;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [currentRunId, snapshots, dataKey, edges]);
  const ranCount = useSyncExternalStore(store.subscribe,
    () => (changed.length && store.run ? Object.keys(store.run.nodes).length : 0));
  const stale = useSameSet(useMemo(
    () => (changed.length && store.run ? staleFrom(changed, edges, Object.keys(store.run.nodes)) : NO_NODES),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [changed, ranCount, edges, store]));

  const rerun = useMemo(() => (rerunTrigger ? rerunSet(rerunTrigger, edges) : null), [rerunTrigger, edges]);
  const problemsByNode = useMemo(() => groupBy(problems, "node_id"), [problems]);
  const problemsByEdge = useMemo(() => groupBy(problems, "edge_id"), [problems]);
  const context = useMemo<EditorContextValue>(() => ({ store, catalog, rerun, stale, problemsByNode, problemsByEdge, labelOf }),
    [store, catalog, rerun, stale, problemsByNode, problemsByEdge, labelOf]);

  const onNodesChange = useCallback((changes: NodeChange<Node>[]) => {
    onNodesChangeBase(changes);
    if (changes.some((c) => c.type !== "select" && c.type !== "dimensions")) touch();
  }, [onNodesChangeBase, touch]);
  const onEdgesChange = useCallback((changes: EdgeChange<Edge>[]) => {
    onEdgesChangeBase(changes);
    if (changes.some((c) => c.type !== "select")) touch();
  }, [onEdgesChangeBase, touch]);

  const isValidConnection = useCallback<IsValidConnection>((conn) =>
    isCompatible(conn, (id) => rf.getNode(id)?.type, catalog), [rf, catalog]);

  const onConnect = useCallback((conn: Connection) => {
    setEdges((eds) => addEdge({ ...conn, id: `e-${conn.source}-${conn.sourceHandle ?? ""}-${conn.target}-${conn.targetHandle ?? ""}` }, eds));
    touch();
  }, [setEdges, touch]);

  const addNode = useCallback((type: string, position?: { x: number; y: number }) => {
    const component = catalog.get(type);
    if (!component) return;
    let pos = position;
    if (!pos) {
      const rect = canvasRef.current?.getBoundingClientRect();
      const center = rf.screenToFlowPosition({ x: (rect?.left ?? 0) + (rect?.width ?? 800) / 2, y: (rect?.top ?? 0) + (rect?.height ?? 600) / 2 });
      const k = rf.getNodes().length % 8;
      pos = { x: center.x - 90 + k * 24, y: center.y - 40 + k * 24 };
    }
    const id = nextNodeId(type, rf.getNodes().map((n) => n.id));
    setNodes((ns) => [...ns, { id, type, position: pos, data: { label: component.name, ...defaultConfig(component) } }]);
    touch();
  }, [catalog, rf, setNodes, touch]);

  const onDrop = useCallback((e: DragEvent) => {
    e.preventDefault();
    const type = e.dataTransfer.getData(DRAG_TYPE) || e.dataTransfer.getData("text/plain");
    if (!type || !catalog.has(type)) return;
    addNode(type, rf.screenToFlowPosition({ x: e.clientX - 90, y: e.clientY - 30 }));
  }, [addNode, catalog, rf]);

  const save = useCallback(async (): Promise<boolean> => {
    const at = version;
    const graph = rf.toObject();
    const { data, error } = await api.PATCH("/api/v1/flows/{flow_id}", {
      params: { path: { flow_id: flow.id } }, body: { graph_data: graph as unknown as Record<string, unknown> },
    });
    if (!data) {
      setNotice(null);
      setRunError(errorMessage(error, "the flow could not be saved"));
      return false;
    }
    setSavedVersion(at);
    setRunError(null);
    setNotice("Saved.");
    return true;
  }, [version, rf, flow.id]);

  const start = useCallback(async (trigger: string | null) => {
    if (dirty && !(await save())) return;
    setProblems([]);
    setRunError(null);
    setNotice(null);
    setRerunTrigger(null);
    setMenu(null);
    if (runId !== null) navigate(`/flows/${flow.id}`);
    const snap = snapshot(rf.getNodes(), rf.getEdges());
    const body: Record<string, unknown> = { flow_id: flow.id };
    if (trigger) body.trigger_node_id = trigger;
    const reply = await tunnel.request("execution.start", body);
    if (reply.type === "execution.accepted") {
      const id = str(reply.data.run_id);
      if (!id) return;
      saveSnapshot(id, snap);
      setSnapshots((m) => new Map(m).set(id, snap));
      adoptedAt.set(id, Date.now());
      store.pinned = false;
      store.adopt(id, str(reply.data.status) ?? "queued");
      const warnings = Array.isArray(reply.data.warnings) ? reply.data.warnings.filter(isRecord) : [];
      if (warnings.length) setNotice(`Ignored settings: ${warnings.map((w) => `${str(w.node_id) ?? "?"}.${str(w.key) ?? "?"}`).join(", ")}`);
      return;
    }
    const details = Array.isArray(reply.data.details) ? reply.data.details.filter(isRecord) : [];
    const found: Problem[] = details.map((d) => ({
      node_id: str(d.node_id), edge_id: str(d.edge_id),
      nodes: Array.isArray(d.nodes) ? d.nodes.filter((x): x is string => typeof x === "string") : null, code: str(d.code) ?? "invalid", message: str(d.message) ?? str(d.code) ?? "invalid",
    }));
    if (found.length) setProblems(found);
    else setRunError(str(reply.data.message) ?? "the run could not start");
  }, [dirty, save, runId, flow.id, rf, store, adoptedAt]);

  const cancel = useCallback(async (id: string) => {
    const reply = await tunnel.request("execution.cancel", { run_id: id });
    if (reply.type === "error") setRunError(str(reply.data.message) ?? "the run could not be cancelled");
  }, []);

  const rename = useCallback(async () => {
    const trimmed = name.trim();
    if (!trimmed || trimmed === flow.name) return setName(flow.name);
    const { data, error } = await api.PATCH("/api/v1/flows/{flow_id}", { params: { path: { flow_id: flow.id } }, body: { name: trimmed } });
    if (!data) setRunError(errorMessage(error, "the flow could not be renamed"));
    else flow.name = data.name;
  }, [name, flow]);

  // Keyboard: Ctrl/Cmd+S saves, Escape closes the menu and the re-run preview.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") {
        e.preventDefault();
        void save();
      } else if (e.key === "Escape") {
        setMenu(null);
        setRerunTrigger(null);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [save]);

  // "Go to node" from the event log: /flows/{id}/runs/{run}?node=<id>.
  const focusNode = useCallback((id: string) => {
    const n = rf.getNode(id);
    if (!n) return;
    setNodes((ns) => ns.map((x) => (x.selected === (x.id === id) ? x : { ...x, selected: x.id === id })));
    setSelectedId(id);
    const w = n.measured?.width ?? 180;
    const h = n.measured?.height ?? 80;
    void rf.setCenter(n.position.x + w / 2, n.position.y + h / 2, { zoom: Math.max(rf.getZoom(), 1), duration: 300 });
  }, [rf, setNodes]);
  useEffect(() => {
    const target = new URLSearchParams(search).get("node");
    if (target) window.setTimeout(() => focusNode(target), 50);
  }, [search, focusNode]);

  // React Flow's callbacks, stable (see DELETE_KEYS).
  const onInit = useCallback((instance: ReactFlowInstance) => {
    // ReactFlowProvider's store exists before <ReactFlow> mounts, so set the saved viewport
    // explicitly as well.
    if (isRecord(flow.graph_data) && isRecord(flow.graph_data.viewport)) void instance.setViewport(initial.viewport);
  }, [flow, initial]);
  const onMoveEnd = useCallback((event: MouseEvent | TouchEvent | null) => { if (event) touch(); }, [touch]);
  const onSelectionChange = useCallback(({ nodes: sel }: OnSelectionChangeParams) =>
    setSelectedId(sel.length === 1 && sel[0] ? sel[0].id : null), []);
  const onNodeContextMenu = useCallback((e: ReactMouseEvent, node: Node) => {
    e.preventDefault();
    // From the keyboard (the menu key, Shift+F10) there is no pointer: open at the node.
    const rect = (e.currentTarget as HTMLElement).getBoundingClientRect();
    const fromKeyboard = e.clientX === 0 && e.clientY === 0;
    setMenu({ id: node.id, x: fromKeyboard ? rect.left + 20 : e.clientX, y: fromKeyboard ? rect.top + 20 : e.clientY });
  }, []);
  const closeMenu = useCallback(() => setMenu(null), []);

  const selected = selectedId ? nodes.find((n) => n.id === selectedId) : undefined;
  const active = runStatus !== null && !["succeeded", "partial", "failed", "cancelled"].includes(runStatus);
  const rerunCounts = rerun ? [...rerun.values()].reduce((acc, m) => { acc[m] += 1; return acc; }, { "will-run": 0, cached: 0 }) : null;

  return (
    <EditorContext.Provider value={context}>
      <Header>
        <input className="flow-title" aria-label="Flow name" value={name} onChange={(e) => setName(e.target.value)}
               onBlur={() => void rename()} onKeyDown={(e) => { if (e.key === "Enter") (e.target as HTMLInputElement).blur(); }} />
        <button type="button" data-testid="save" onClick={() => void save()}>Save</button>
        {dirty && <span data-testid="unsaved" className="unsaved">● Unsaved changes</span>}
        <button type="button" data-testid="run" onClick={() => void start(null)} disabled={active}>▶ Run</button>
        <RunBadge store={store} onCancel={(id) => void cancel(id)} adoptedAt={adoptedAt} />
        <button type="button" aria-pressed={showHistory} onClick={() => setShowHistory((v) => !v)}>History</button>
      </Header>
      <Announcer store={store} labelOf={labelOf} />
      <div className="editor">
        <Palette components={components} onAdd={(t) => addNode(t)} />
        <div className="canvas" ref={canvasRef} onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }} onDrop={onDrop}>
          {runId && (
            <div className="banner">Showing a past run. <Link to={`/flows/${flow.id}`}>Back to the live flow</Link></div>
          )}
          {rerun && rerunTrigger && rerunCounts && (
            <div className="banner rerun-bar" role="region" aria-label="Re-run preview">
              Re-run from <strong>{labelOf(rerunTrigger)}</strong>: {rerunCounts["will-run"]} will run, {rerunCounts.cached} from cache.
              <button type="button" data-testid="rerun-confirm" onClick={() => void start(rerunTrigger)} autoFocus>Re-run</button>
              <button type="button" onClick={() => setRerunTrigger(null)}>Cancel</button>
            </div>
          )}
          {(notice || runError) && (
            <div className={runError ? "banner banner-error" : "banner"} role={runError ? "alert" : undefined}>
              {runError ?? notice}
              <button type="button" className="icon" aria-label="Dismiss" onClick={() => { setNotice(null); setRunError(null); }}>✕</button>
            </div>
          )}
          <ReactFlow
            nodes={nodes} edges={edges} nodeTypes={nodeTypes} edgeTypes={edgeTypes}
            onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
            isValidConnection={isValidConnection}
            defaultViewport={initial.viewport}
            onInit={onInit}
            fitView={isRecord(flow.graph_data) && !isRecord(flow.graph_data.viewport) && initial.nodes.length > 0}
            onMoveEnd={onMoveEnd}
            onSelectionChange={onSelectionChange}
            onNodeContextMenu={onNodeContextMenu}
            onPaneClick={closeMenu}
            deleteKeyCode={DELETE_KEYS}
            minZoom={0.05}
            fitViewOptions={FIT_VIEW_OPTIONS}
          >
            <Background />
            <MiniMap pannable zoomable ariaLabel="Mini map" />
            <Controls />
          </ReactFlow>
          {problems.length > 0 && (
            <section className="problems" aria-label="Validation problems">
              <h3>The flow cannot run: {problems.length} problem{problems.length === 1 ? "" : "s"}</h3>
              <ul>
                {problems.map((p, i) => (
                  <li key={i} data-testid="validation-problem" data-node-id={p.node_id ?? undefined} data-edge-id={p.edge_id ?? undefined} data-code={p.code}>
                    {p.node_id ? <button type="button" className="link" onClick={() => focusNode(p.node_id as string)}>{labelOf(p.node_id)}</button> : p.edge_id ? <span>edge {p.edge_id}</span> : null}
                    {(p.node_id || p.edge_id) ? ": " : ""}{p.message}
                  </li>
                ))}
              </ul>
            </section>
          )}
        </div>
        {(selected || showHistory) && (
          <aside className="side-panel" aria-label="Details">
            {selected && (
              <section aria-label="Node settings">
                <h2>{typeof selected.data.label === "string" && selected.data.label ? selected.data.label : selected.id}</h2>
                <p className="muted">{selected.id} · {catalog.get(selected.type ?? "")?.name ?? selected.type}</p>
                <ConfigPanel key={selected.id} nodeId={selected.id} component={catalog.get(selected.type ?? "")} data={selected.data}
                             onChange={(data) => { setNodes((ns) => ns.map((n) => (n.id === selected.id ? { ...n, data } : n))); touch(); }} />
                <NodeRunPanel nodeId={selected.id} edges={edges} onRerun={setRerunTrigger} showRerun={menu === null} />
                <button type="button" className="danger" onClick={() => { void rf.deleteElements({ nodes: [{ id: selected.id }] }); }}>Delete node</button>
              </section>
            )}
            {showHistory && <RunHistory flowId={flow.id} currentRunId={currentRunId} refreshKey={`${currentRunId}-${runStatus}`} />}
          </aside>
        )}
      </div>
      {menu && <ContextMenu menu={menu} onClose={() => setMenu(null)}
                            onRerun={() => { setRerunTrigger(menu.id); setMenu(null); }}
                            onDelete={() => { void rf.deleteElements({ nodes: [{ id: menu.id }] }); setMenu(null); }} />}
    </EditorContext.Provider>
  );
}

function ContextMenu({ menu, onClose, onRerun, onDelete }: { menu: { x: number; y: number }; onClose: () => void; onRerun: () => void; onDelete: () => void }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    ref.current?.querySelector("button")?.focus();
    const away = (e: MouseEvent) => {
      if (ref.current && !ref.current.contains(e.target as globalThis.Node)) onClose();
    };
    window.addEventListener("mousedown", away);
    return () => window.removeEventListener("mousedown", away);
  }, [onClose]);
  return (
    <div ref={ref} className="context-menu" role="menu" style={{ left: menu.x, top: menu.y }}>
      <button type="button" role="menuitem" data-testid="rerun-from-node" onClick={onRerun}>Re-run from this node…</button>
      <button type="button" role="menuitem" onClick={onDelete}>Delete node</button>
    </div>
  );
}

function groupBy(problems: Problem[], key: "node_id" | "edge_id"): Map<string, Problem[]> {
  const map = new Map<string, Problem[]>();
  for (const p of problems) {
    // A cycle is shown on every node on it, not only the first.
    const ids = new Set(key === "node_id" && p.nodes ? [...p.nodes] : []);
    if (p[key]) ids.add(p[key] as string);
    for (const id of ids) {
      const list = map.get(id);
      if (list) list.push(p);
      else map.set(id, [p]);
    }
  }
  return map;
}

/** A counter that changes only when some node's data (its config) changes, not on a drag. */
function useStableDataKey(nodes: Node[]): number {
  const last = useRef<{ datas: unknown[]; key: number }>({ datas: [], key: 0 });
  const datas = nodes.map((n) => n.data);
  const prev = last.current;
  if (datas.length !== prev.datas.length || datas.some((d, i) => d !== prev.datas[i])) {
    last.current = { datas, key: prev.key + 1 };
  }
  return last.current.key;
}

/** `next` when its members differ from the last one returned, else that last Set: an equal
 *  stale set keeps the editor context (read by every node and edge) unchanged. */
function useSameSet(next: Set<string>): Set<string> {
  const last = useRef(next);
  const prev = last.current;
  if (prev !== next && (prev.size !== next.size || [...next].some((id) => !prev.has(id)))) last.current = next;
  return last.current;
}
