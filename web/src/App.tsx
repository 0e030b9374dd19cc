import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import { restore, session } from "./api/client";
import { tunnel } from "./app/tunnel";
import { matchRoute, navigate, useLocation } from "./lib/router";
import { LoginPage, SignupPage } from "./pages/Auth";
import { HomePage } from "./pages/Home";
import { EventsPage } from "./pages/Events";
import { EditorPage } from "./editor/Editor";

function useUser() {
  return useSyncExternalStore(session.subscribe.bind(session), () => session.user);
}

/** The page root: carries data-tunnel and data-cursor (DESIGN.md §9), set without a
 *  re-render of the page on every event. */
function useRootAttributes(ref: React.RefObject<HTMLDivElement | null>): void {
  useEffect(() => {
    const paint = () => {
      const el = ref.current;
      if (!el) return;
      el.dataset.tunnel = tunnel.state;
      if (tunnel.cursor !== null) el.dataset.cursor = String(tunnel.cursor);
      else delete el.dataset.cursor;
    };
    paint();
    const offState = tunnel.onState(paint);
    const offEvent = tunnel.onEvent((ev) => {
      if (ev.cursor !== null || ev.type === "connection.ready") paint();
    });
    return () => {
      offState();
      offEvent();
    };
  }, [ref]);
}

export function App() {
  const user = useUser();
  const [restoring, setRestoring] = useState(() => session.refreshToken !== null);
  const { path } = useLocation();
  const route = matchRoute(path);
  const rootRef = useRef<HTMLDivElement>(null);
  useRootAttributes(rootRef);

  useEffect(() => {
    if (!restoring) return;
    let live = true;
    void restore().then(() => {
      if (live) setRestoring(false);
    });
    return () => {
      live = false;
    };
  }, [restoring]);

  useEffect(() => {
    if (user) tunnel.start();
    else tunnel.stop();
  }, [user]);

  const publicRoute = route.name === "login" || route.name === "signup";
  useEffect(() => {
    if (restoring) return;
    if (!user && !publicRoute) {
      const next = window.location.pathname + window.location.search;
      navigate(`/login${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`, true);
    } else if (user && publicRoute) {
      const next = new URLSearchParams(window.location.search).get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", true);
    }
  }, [user, publicRoute, restoring]);

  let page: React.ReactNode;
  if (restoring) page = <p className="centered">Restoring your session…</p>;
  else if (route.name === "login") page = <LoginPage />;
  else if (route.name === "signup") page = <SignupPage />;
  else if (!user) page = null;
  else if (route.name === "home") page = <HomePage />;
  else if (route.name === "events") page = <EventsPage />;
  else if (route.name === "flow") page = <EditorPage key={route.flowId} flowId={route.flowId} runId={route.runId} />;
  else page = <p className="centered">Nothing here. <a href="/" onClick={(e) => { e.preventDefault(); navigate("/"); }}>Back to your flows</a></p>;

  return (
    <div className="app-root" ref={rootRef} data-tunnel="closed">
      {page}
    </div>
  );
}
