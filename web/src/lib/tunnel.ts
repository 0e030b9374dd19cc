// The one WebSocket tunnel of the session (DESIGN.md §4): connects with the access token,
// keeps the cursor of the last persisted event, and on any drop reconnects with backoff and
// after=<cursor> (refreshing the token first on 4001), so nothing is missed or repeated.
import { advance, backoffDelay, closeAction, isNew, onReady, tunnelUrl, type CursorState } from "./cursor";
import { fromTunnel, isRecord, str, type LogEvent } from "./events";

export type TunnelState = "connecting" | "open" | "closed";

export interface TunnelAuth {
  token(): string | null;
  /** Gets a fresh access token; false when the session is over. */
  refresh(): Promise<boolean>;
}

export interface Reply {
  type: string;
  data: Record<string, unknown>;
}

type EventListener = (ev: LogEvent) => void;
type StateListener = () => void;

const CLIENT_PING_MS = 20_000; // under the server's 60 s idle limit
const REQUEST_TIMEOUT_MS = 20_000;

export class Tunnel {
  state: TunnelState = "closed";
  private cursorState: CursorState = { cursor: null };
  private socket: WebSocket | null = null;
  private failures = 0;
  private retryTimer: number | undefined;
  private pingTimer: number | undefined;
  private stopped = true;
  private eventListeners = new Set<EventListener>();
  private stateListeners = new Set<StateListener>();
  private pending = new Map<string, (reply: Reply) => void>();
  private outbox: string[] = [];
  private requestSeq = 0;

  constructor(private auth: TunnelAuth, private url: string) {}

  get cursor(): number | null {
    return this.cursorState.cursor;
  }

  onEvent(listener: EventListener): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onState(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  private setState(state: TunnelState): void {
    if (this.state === state) return;
    this.state = state;
    for (const l of this.stateListeners) l();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "logout");
    for (const resolve of this.pending.values()) resolve({ type: "error", data: { code: "closed", message: "the tunnel closed" } });
    this.pending.clear();
    this.outbox = [];
    this.cursorState = { cursor: null };
    this.setState("closed");
  }

  /** Sends a request and resolves with the reply that echoes its request_id. */
  request(type: string, data: Record<string, unknown>): Promise<Reply> {
    this.requestSeq += 1;
    const requestId = `r${Date.now().toString(36)}-${this.requestSeq}`;
    const frame = JSON.stringify({ type, data, request_id: requestId });
    return new Promise((resolve) => {
      // A reply lost with a dropped socket must not leave the caller waiting forever.
      const timer = window.setTimeout(() => {
        if (this.pending.delete(requestId)) {
          resolve({ type: "error", data: { code: "timeout", message: "no reply from the server" } });
        }
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(requestId, (reply) => {
        window.clearTimeout(timer);
        resolve(reply);
      });
      if (this.socket && this.state === "open") this.socket.send(frame);
      else this.outbox.push(frame);
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const token = this.auth.token();
    if (!token) {
      void this.refreshThenConnect();
      return;
    }
    this.setState("connecting");
    const socket = new WebSocket(tunnelUrl(this.url, token, this.cursorState.cursor));
    this.socket = socket;
    socket.onmessage = (msg) => {
      if (this.socket === socket) this.receive(msg.data);
    };
    socket.onclose = (close) => {
      if (this.socket !== socket) return;
      this.socket = null;
      window.clearInterval(this.pingTimer);
      this.setState(this.stopped ? "closed" : "connecting");
      this.afterClose(close.code);
    };
  }

  private afterClose(code: number): void {
    if (this.stopped) return;
    const action = closeAction(code);
    if (action === "stop") {
      this.setState("closed");
      return;
    }
    if (action === "refresh-then-reconnect") {
      void this.refreshThenConnect();
      return;
    }
    this.scheduleReconnect();
  }

  private async refreshThenConnect(): Promise<void> {
    const ok = await this.auth.refresh();
    if (this.stopped) return;
    if (!ok && !this.auth.token()) {
      this.setState("closed");
      this.stopped = true;
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    window.clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.failures);
    this.failures += 1;
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  private receive(text: unknown): void {
    let frame: unknown;
    try {
      frame = JSON.parse(String(text));
    } catch {
      return;
    }
    const ev = fromTunnel(frame);
    if (!ev) return;
    if (ev.type === "connection.ready") {
      this.cursorState = onReady(this.cursorState, typeof ev.data.cursor === "number" ? ev.data.cursor : null);
      this.failures = 0;
      this.setState("open");
      this.pingTimer = window.setInterval(() => this.socket?.send(JSON.stringify({ type: "ping", data: {} })), CLIENT_PING_MS);
      const queued = this.outbox;
      this.outbox = [];
      for (const f of queued) this.socket?.send(f);
      this.emit(ev);
      return;
    }
    if (ev.type === "ping") {
      this.socket?.send(JSON.stringify({ type: "pong", data: {} }));
      return;
    }
    if (ev.type === "pong") return;
    const requestId = isRecord(frame) ? str(frame.request_id) ?? str(ev.data.request_id) : null;
    if (requestId && this.pending.has(requestId)) {
      const resolve = this.pending.get(requestId);
      this.pending.delete(requestId);
      resolve?.({ type: ev.type, data: ev.data });
    }
    if (ev.cursor !== null) {
      if (!isNew(this.cursorState, ev.cursor)) return; // already applied before a reconnect
      this.cursorState = advance(this.cursorState, ev.cursor);
    }
    this.emit(ev);
  }

  private emit(ev: LogEvent): void {
    for (const l of this.eventListeners) l(ev);
  }
}
