// Every REST call goes through this openapi-fetch client, typed by the generated schema.
// The access token lives in memory only; the refresh token in sessionStorage, so a reload
// of the tab keeps the session and closing it ends it.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type User = Schemas["UserOut"];
export type Flow = Schemas["FlowOut"];
export type Project = Schemas["ProjectOut"];

const REFRESH_KEY = "cascade.refresh_token";

type Listener = () => void;

class Session {
  accessToken: string | null = null;
  user: User | null = null;
  private listeners = new Set<Listener>();
  private refreshing: Promise<boolean> | null = null;

  get refreshToken(): string | null {
    return sessionStorage.getItem(REFRESH_KEY);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  setTokens(access: string, refresh: string): void {
    this.accessToken = access;
    sessionStorage.setItem(REFRESH_KEY, refresh);
  }

  setUser(user: User | null): void {
    this.user = user;
    this.notify();
  }

  clear(): void {
    this.accessToken = null;
    this.user = null;
    sessionStorage.removeItem(REFRESH_KEY);
    this.notify();
  }

  /** Rotates the refresh token for a new pair; one request at a time (a reused token would
   *  revoke its whole family). Resolves false when the session is over. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const token = this.refreshToken;
    if (!token) return false;
    try {
      const { data } = await raw.POST("/api/v1/auth/refresh", { body: { refresh_token: token } });
      if (!data) {
        this.clear();
        return false;
      }
      this.setTokens(data.access_token, data.refresh_token);
      return true;
    } catch {
      return false; // network: keep the token, a later try may work
    }
  }
}

export const session = new Session();

/** A client without the auth retry (login, refresh, sign-up). */
const raw = createClient<paths>({ baseUrl: window.location.origin });

function withAuth(request: Request): Request {
  const req = request.clone();
  if (session.accessToken) req.headers.set("Authorization", `Bearer ${session.accessToken}`);
  return req;
}

/** Adds the bearer token; on a 401 refreshes once and retries the same request. */
async function authFetch(input: Request): Promise<Response> {
  const spare = input.clone();
  const response = await fetch(withAuth(input));
  if (response.status !== 401 || !session.refreshToken) return response;
  if (!(await session.refresh())) {
    if (!session.refreshToken) session.clear();
    return response;
  }
  return fetch(withAuth(spare));
}

export const api = createClient<paths>({ baseUrl: window.location.origin, fetch: authFetch });
export const publicApi = raw;

/** A fetch with the same token handling, for the few calls openapi-fetch cannot make
 *  (the NDJSON export stream). */
export function authedFetch(path: string, init: RequestInit = {}): Promise<Response> {
  return authFetch(new Request(new URL(path, window.location.origin), init));
}

/** The message of an error body in the API's one shape, or a fallback. */
export function errorMessage(error: unknown, fallback = "the request failed"): string {
  if (typeof error === "object" && error !== null && "error" in error) {
    const inner = (error as { error: unknown }).error;
    if (typeof inner === "object" && inner !== null && "message" in inner) {
      const message = (inner as { message: unknown }).message;
      if (typeof message === "string") return message;
    }
  }
  return fallback;
}

export async function login(identifier: string, password: string): Promise<string | null> {
  const { data, error } = await raw.POST("/api/v1/auth/login", { body: { identifier, password } });
  if (!data) return errorMessage(error, "login failed");
  session.setTokens(data.access_token, data.refresh_token);
  session.setUser(data.user);
  return null;
}

/** Restores a session after a reload: rotate the stored refresh token, then read /users/me. */
export async function restore(): Promise<boolean> {
  if (!session.refreshToken) return false;
  if (!(await session.refresh())) return false;
  const { data } = await api.GET("/api/v1/users/me");
  if (!data) return false;
  session.setUser(data);
  return true;
}

export function logout(): void {
  session.clear();
}
