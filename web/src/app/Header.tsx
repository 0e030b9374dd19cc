import type { ReactNode } from "react";
import { logout, session } from "../api/client";
import { Link } from "../lib/Link";
import { navigate } from "../lib/router";

export function Header({ children }: { children?: ReactNode }) {
  return (
    <header className="topbar">
      <nav aria-label="Main">
        <Link to="/" className="brand">Cascade</Link>
        <Link to="/">Flows</Link>
        <Link to="/events">Event log</Link>
      </nav>
      <div className="topbar-tools">{children}</div>
      <div className="topbar-user">
        <span>{session.user?.username}</span>
        <button type="button" data-testid="logout" onClick={() => { logout(); navigate("/login"); }}>Log out</button>
      </div>
    </header>
  );
}
