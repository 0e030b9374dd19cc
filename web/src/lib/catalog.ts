// The node catalog as the page uses it, read from GET /components. That response is a free
// JSON object in the OpenAPI document, so it is checked here rather than trusted.
import { isRecord, str } from "./events";

export interface CatalogField {
  name: string;
  kind: string;
  default: unknown;
  required: boolean;
  options: unknown[] | null;
  description: string;
}

export interface CatalogPort {
  name: string;
  direction: "input" | "output";
  kind: string;
}

export interface Component {
  type: string;
  name: string;
  category: string;
  description: string;
  fields: CatalogField[];
  ports: CatalogPort[];
}

export function parseCatalog(body: unknown): Component[] {
  if (!Array.isArray(body)) return [];
  const out: Component[] = [];
  for (const raw of body) {
    if (!isRecord(raw) || typeof raw.type !== "string") continue;
    const fields = Array.isArray(raw.fields) ? raw.fields.filter(isRecord).map((f) => ({
      name: str(f.name) ?? "", kind: str(f.kind) ?? "any", default: f.default ?? null,
      required: f.required === true, options: Array.isArray(f.options) ? f.options : null,
      description: str(f.description) ?? "",
    })).filter((f) => f.name) : [];
    const ports = Array.isArray(raw.ports) ? raw.ports.filter(isRecord).map((p) => ({
      name: str(p.name) ?? "", direction: p.direction === "output" ? "output" as const : "input" as const,
      kind: str(p.kind) ?? "text",
    })).filter((p) => p.name) : [];
    out.push({
      type: raw.type, name: str(raw.name) ?? raw.type, category: str(raw.category) ?? "Other",
      description: str(raw.description) ?? "", fields, ports,
    });
  }
  return out;
}

export function byCategory(components: Component[]): [string, Component[]][] {
  const groups = new Map<string, Component[]>();
  for (const c of components) {
    const list = groups.get(c.category);
    if (list) list.push(c);
    else groups.set(c.category, [c]);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** The kind of a port; a missing handle means the node's first port of that direction. */
export function portKind(component: Component | undefined, handle: string | null | undefined,
                         direction: "input" | "output"): string | null {
  if (!component) return null;
  const ports = component.ports.filter((p) => p.direction === direction);
  const port = handle ? ports.find((p) => p.name === handle) : ports[0];
  return port ? port.kind : null;
}

export interface ConnectionLike {
  source: string | null;
  target: string | null;
  sourceHandle?: string | null;
  targetHandle?: string | null;
}

/** A connection is valid between two different nodes whose ports have the same kind. */
export function isCompatible(conn: ConnectionLike, typeOf: (id: string) => string | undefined,
                             catalog: Map<string, Component>): boolean {
  if (!conn.source || !conn.target || conn.source === conn.target) return false;
  const sourceType = typeOf(conn.source);
  const targetType = typeOf(conn.target);
  const out = portKind(sourceType ? catalog.get(sourceType) : undefined, conn.sourceHandle, "output");
  const inp = portKind(targetType ? catalog.get(targetType) : undefined, conn.targetHandle, "input");
  return out !== null && inp !== null && out === inp;
}

/** A new node's data: every field's default (the server fills the rest). */
export function defaultConfig(component: Component): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const f of component.fields) if (f.default !== null && f.default !== undefined) data[f.name] = f.default;
  return data;
}
