import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, errorMessage, type Flow, type Project } from "../api/client";
import { Header } from "../app/Header";
import { navigate } from "../lib/router";

export function HomePage() {
  const [projects, setProjects] = useState<Project[]>([]);
  const [flows, setFlows] = useState<Flow[]>([]);
  const [projectId, setProjectId] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [projectName, setProjectName] = useState("");

  const load = useCallback(async () => {
    const [p, f] = await Promise.all([api.GET("/api/v1/projects"), api.GET("/api/v1/flows")]);
    if (p.data) setProjects(p.data);
    if (f.data) setFlows(f.data);
    if (p.error || f.error) setError(errorMessage(p.error ?? f.error));
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  async function createFlow(e: FormEvent) {
    e.preventDefault();
    const { data, error: failure } = await api.POST("/api/v1/flows", {
      body: { name: name.trim() || "Untitled flow", project_id: projectId, graph_data: { nodes: [], edges: [], viewport: { x: 0, y: 0, zoom: 1 } } },
    });
    if (!data) return setError(errorMessage(failure));
    setName("");
    setFlows((list) => [...list, data]);
  }

  async function createProject(e: FormEvent) {
    e.preventDefault();
    if (!projectName.trim()) return;
    const { data, error: failure } = await api.POST("/api/v1/projects", { body: { name: projectName.trim() } });
    if (!data) return setError(errorMessage(failure));
    setProjectName("");
    setProjects((list) => [...list, data]);
  }

  async function deleteProject(project: Project) {
    const { error: failure } = await api.DELETE("/api/v1/projects/{project_id}", { params: { path: { project_id: project.id } } });
    if (failure) return setError(errorMessage(failure));
    if (projectId === project.id) setProjectId(null);
    await load();
  }

  async function rename(flow: Flow, newName: string) {
    const { data, error: failure } = await api.PATCH("/api/v1/flows/{flow_id}", { params: { path: { flow_id: flow.id } }, body: { name: newName } });
    if (!data) return setError(errorMessage(failure));
    setFlows((list) => list.map((f) => (f.id === data.id ? data : f)));
  }

  async function remove(flow: Flow) {
    const { error: failure } = await api.DELETE("/api/v1/flows/{flow_id}", { params: { path: { flow_id: flow.id } } });
    if (failure) return setError(errorMessage(failure));
    setFlows((list) => list.filter((f) => f.id !== flow.id));
  }

  const shown = projectId === null ? flows : flows.filter((f) => f.project_id === projectId);

  return (
    <>
      <Header />
      <main className="home">
        <section className="projects" aria-labelledby="projects-title">
          <h2 id="projects-title">Projects</h2>
          <ul>
            <li>
              <button type="button" className={projectId === null ? "current" : ""} onClick={() => setProjectId(null)}>All flows</button>
            </li>
            {projects.map((p) => (
              <li key={p.id}>
                <button type="button" className={projectId === p.id ? "current" : ""} onClick={() => setProjectId(p.id)}>{p.name}</button>
                <button type="button" className="icon" aria-label={`Delete project ${p.name}`} onClick={() => void deleteProject(p)}>✕</button>
              </li>
            ))}
          </ul>
          <form onSubmit={createProject} className="inline-form">
            <label>New project <input value={projectName} onChange={(e) => setProjectName(e.target.value)} /></label>
            <button type="submit">Add</button>
          </form>
        </section>
        <section className="flows" aria-labelledby="flows-title">
          <h2 id="flows-title">Flows</h2>
          <form onSubmit={createFlow} className="inline-form">
            <label>Name <input data-testid="flow-name" value={name} placeholder="Untitled flow" onChange={(e) => setName(e.target.value)} /></label>
            <button type="submit" data-testid="new-flow">New flow</button>
          </form>
          {error && <p role="alert" className="form-error">{error}</p>}
          {shown.length === 0 ? <p>No flows yet.</p> : (
            <ul className="flow-list">
              {shown.map((f) => <FlowRow key={f.id} flow={f} onRename={rename} onDelete={remove} />)}
            </ul>
          )}
        </section>
      </main>
    </>
  );
}

function FlowRow({ flow, onRename, onDelete }: { flow: Flow; onRename: (f: Flow, name: string) => Promise<void>; onDelete: (f: Flow) => Promise<void> }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(flow.name);
  const open = () => navigate(`/flows/${flow.id}`);
  const nodes = Array.isArray(flow.graph_data.nodes) ? flow.graph_data.nodes.length : 0;

  return (
    <li data-testid={`flow-row-${flow.id}`} className="flow-row"
        onClick={(e) => {
          if (!editing && !(e.target as HTMLElement).closest("button, input, form")) open();
        }}>
      {editing ? (
        <form className="inline-form" onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) void onRename(flow, value.trim()).then(() => setEditing(false));
        }}>
          <label>Flow name <input autoFocus value={value} onChange={(e) => setValue(e.target.value)} /></label>
          <button type="submit">Save name</button>
          <button type="button" onClick={() => { setEditing(false); setValue(flow.name); }}>Cancel</button>
        </form>
      ) : (
        <>
          <a className="flow-open" href={`/flows/${flow.id}`} onClick={(e) => { e.preventDefault(); open(); }}>{flow.name}</a>
          <span className="muted">{nodes} node{nodes === 1 ? "" : "s"} · updated {new Date(flow.updated_at).toLocaleString()}</span>
          <span className="row-actions">
            <button type="button" onClick={() => { setValue(flow.name); setEditing(true); }}>Rename</button>
            <button type="button" onClick={() => void onDelete(flow)}>Delete</button>
          </span>
        </>
      )}
    </li>
  );
}
