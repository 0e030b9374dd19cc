// A small client router over the History API: six routes do not need a library.
import { useSyncExternalStore } from "react";

type Listener = () => void;
const listeners = new Set<Listener>();

function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  window.addEventListener("popstate", listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener("popstate", listener);
  };
}

export function navigate(to: string, replace = false): void {
  if (to === window.location.pathname + window.location.search) return;
  if (replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  for (const l of listeners) l();
}

export function useLocation(): { path: string; search: string } {
  const path = useSyncExternalStore(subscribe, () => window.location.pathname);
  const search = useSyncExternalStore(subscribe, () => window.location.search);
  return { path, search };
}

export type Route =
  | { name: "login" }
  | { name: "signup" }
  | { name: "home" }
  | { name: "flow"; flowId: string; runId: string | null }
  | { name: "events" }
  | { name: "not-found" };

export function matchRoute(path: string): Route {
  if (path === "/login") return { name: "login" };
  if (path === "/signup") return { name: "signup" };
  if (path === "/" || path === "") return { name: "home" };
  if (path === "/events") return { name: "events" };
  const m = /^\/flows\/([^/]+)(?:\/runs\/([^/]+))?\/?$/.exec(path);
  if (m && m[1]) return { name: "flow", flowId: decodeURIComponent(m[1]), runId: m[2] ? decodeURIComponent(m[2]) : null };
  return { name: "not-found" };
}
