import { describe, expect, it } from "vitest";
import { changedNodes, snapshot, staleFrom, staleNodes } from "./stale";

const nodes = () => [
  { id: "a", type: "initialPrompt", data: { label: "A", prompt: "hi" } },
  { id: "b", type: "translator", data: { language: "French" } },
  { id: "c", type: "textOutput", data: {} },
];
const edges = [{ source: "a", target: "b" }, { source: "b", target: "c" }];

describe("the stale diff", () => {
  it("is empty when nothing changed, and ignores the label and positions", () => {
    const snap = snapshot(nodes(), edges);
    const now = nodes();
    (now[0] as { data: Record<string, unknown> }).data.label = "renamed";
    expect(staleNodes(snap, now, edges, ["a", "b", "c"]).size).toBe(0);
  });

  it("marks a changed node and its descendants", () => {
    const snap = snapshot(nodes(), edges);
    const now = nodes();
    (now[1] as { data: Record<string, unknown> }).data.language = "German";
    expect([...staleNodes(snap, now, edges, ["a", "b", "c"])].sort()).toEqual(["b", "c"]);
  });

  it("marks a node whose inputs changed", () => {
    const snap = snapshot(nodes(), edges);
    const rewired = [{ source: "a", target: "c" }, { source: "a", target: "b" }];
    expect([...staleNodes(snap, nodes(), rewired, ["a", "b", "c"])].sort()).toEqual(["c"]);
  });

  it("does not mark nodes that did not take part in the run", () => {
    const snap = snapshot(nodes(), edges);
    const now = [...nodes(), { id: "d", type: "textOutput", data: {} }];
    const more = [...edges, { source: "c", target: "d" }];
    (now[0] as { data: Record<string, unknown> }).data.prompt = "changed";
    expect([...staleNodes(snap, now, more, ["a", "b", "c"])].sort()).toEqual(["a", "b", "c"]);
  });

  it("compares configs independently of key order", () => {
    const snap = snapshot([{ id: "a", type: "t", data: { x: 1, y: { p: 1, q: 2 } } }], []);
    expect(staleNodes(snap, [{ id: "a", type: "t", data: { y: { q: 2, p: 1 }, x: 1 } }], [], ["a"]).size).toBe(0);
  });

  it("keeps the stored snapshot format: inputs sorted per target, empty without inputs", () => {
    const snap = snapshot([{ id: "m", type: "merge", data: {} }, { id: "a", type: "t", data: {} }],
      [{ source: "b", target: "m", sourceHandle: "out", targetHandle: "y" } as { source: string; target: string },
       { source: "a", target: "m", sourceHandle: "out", targetHandle: "x" } as { source: string; target: string }]);
    expect(snap.m).toBe('{"config":{},"inputs":"a:out>x|b:out>y","type":"merge"}');
    expect(snap.a).toBe('{"config":{},"inputs":"","type":"t"}');
  });

  it("finds changed nodes from the graph alone, then limits the stale set to the run", () => {
    const snap = snapshot(nodes(), edges);
    const now = nodes();
    (now[1] as { data: Record<string, unknown> }).data.language = "German";
    const changed = changedNodes(snap, snapshot(now, edges));
    expect(changed).toEqual(["b"]);
    expect([...staleFrom(changed, edges, ["a", "b", "c"])].sort()).toEqual(["b", "c"]);
    expect(staleFrom(changed, edges, ["a", "c"]).size).toBe(0);
    expect([...staleFrom(changed, edges, ["b"])]).toEqual(["b"]);
  });
});

