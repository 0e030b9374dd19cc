// Cursor and resume: the page keeps the last cursor it applied and reconnects with
// after=<cursor>, so the server replays exactly what was missed (DESIGN.md §4).

export interface CursorState {
  /** The last persisted cursor applied; null before the first connection.ready. */
  cursor: number | null;
}

/**
 * Whether a persisted event is new. The server sends each event once per connection, but a
 * reconnect can overlap what a previous connection already delivered.
 */
export function isNew(state: CursorState, cursor: number | null): boolean {
  if (cursor === null) return true; // ephemeral: no cursor, never replayed
  return state.cursor === null || cursor > state.cursor;
}

export function advance(state: CursorState, cursor: number | null): CursorState {
  if (cursor === null || (state.cursor !== null && cursor <= state.cursor)) return state;
  return { cursor };
}

/**
 * connection.ready carries the server's current cursor. On a first connection (no cursor
 * yet) the page starts live from there; on a resume it keeps its own, the replay follows.
 */
export function onReady(state: CursorState, serverCursor: number | null): CursorState {
  if (state.cursor === null) return { cursor: serverCursor };
  return state;
}

export function tunnelUrl(base: string, token: string, cursor: number | null): string {
  const params = new URLSearchParams({ token });
  if (cursor !== null) params.set("after", String(cursor));
  return `${base}?${params.toString()}`;
}

/** What to do when the socket closes, by close code (DESIGN.md §4). */
export type CloseAction = "refresh-then-reconnect" | "reconnect" | "stop";

export function closeAction(code: number): CloseAction {
  if (code === 4001) return "refresh-then-reconnect"; // token expired or invalid
  if (code === 4003) return "stop"; // origin refused: retrying cannot help
  return "reconnect"; // 4409 slow consumer, 4408 idle, 1006 drop, 1001 restart, 4429 cap…
}

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 10_000 };

/** Exponential backoff with full jitter; `failures` is 0 for the first retry. */
export function backoffDelay(failures: number, random: () => number = Math.random,
                             policy: Backoff = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(failures, 20));
  return Math.round(policy.baseMs / 2 + random() * (ceiling - policy.baseMs / 2));
}
