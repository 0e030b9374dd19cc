// The session's tunnel, shared by every page.
import { session } from "../api/client";
import { Tunnel } from "../lib/tunnel";

const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";

export const tunnel = new Tunnel(
  { token: () => session.accessToken, refresh: () => session.refresh() },
  `${scheme}//${window.location.host}/api/v1/ws`,
);
