import { describe, expect, it } from "vitest";
import { advance, backoffDelay, closeAction, isNew, onReady, tunnelUrl } from "./cursor";

describe("cursor and resume", () => {
  it("starts from the server's cursor on a first connection and keeps its own on a resume", () => {
    expect(onReady({ cursor: null }, 41)).toEqual({ cursor: 41 });
    expect(onReady({ cursor: 12 }, 41)).toEqual({ cursor: 12 });
  });

  it("applies each persisted event once across a reconnect seam", () => {
    let state = onReady({ cursor: null }, 5);
    const seen: number[] = [];
    // first connection delivers 6, 7; the socket drops; the replay after=7 sends 8, 9,
    // and a duplicate delivery of 7 (a seam bug) must be dropped.
    for (const c of [6, 7, 7, 8, 6, 9]) {
      if (isNew(state, c)) {
        seen.push(c);
        state = advance(state, c);
      }
    }
    expect(seen).toEqual([6, 7, 8, 9]);
    expect(state.cursor).toBe(9);
    expect(isNew(state, null)).toBe(true); // ephemeral events have no cursor
  });

  it("builds the tunnel URL with after= only once a cursor is known", () => {
    expect(tunnelUrl("ws://h/api/v1/ws", "t k", null)).toBe("ws://h/api/v1/ws?token=t+k");
    expect(tunnelUrl("ws://h/api/v1/ws", "tok", 0)).toBe("ws://h/api/v1/ws?token=tok&after=0");
    expect(tunnelUrl("ws://h/api/v1/ws", "tok", 42)).toBe("ws://h/api/v1/ws?token=tok&after=42");
  });

  it("refreshes the token on 4001, resumes on a drop, 4408 and 4409, stops on 4003", () => {
    expect(closeAction(4001)).toBe("refresh-then-reconnect");
    expect(closeAction(4409)).toBe("reconnect");
    expect(closeAction(4408)).toBe("reconnect");
    expect(closeAction(1006)).toBe("reconnect");
    expect(closeAction(4003)).toBe("stop");
  });

  it("backs off exponentially within bounds", () => {
    const low = () => 0;
    const high = () => 1;
    expect(backoffDelay(0, high)).toBe(250);
    expect(backoffDelay(1, high)).toBe(500);
    expect(backoffDelay(3, high)).toBe(2000);
    expect(backoffDelay(30, high)).toBe(10_000);
    expect(backoffDelay(5, low)).toBe(125);
    for (let i = 0; i < 10; i += 1) {
      const d = backoffDelay(i);
      expect(d).toBeGreaterThanOrEqual(125);
      expect(d).toBeLessThanOrEqual(10_000);
    }
  });
});
