import { describe, expect, it } from "vitest";
import { DEFAULT_VIEWPORT, fromGraphData, nextNodeId, stableJson } from "./graph";

// What React Flow's toObject() returns for a drawn flow, React Flow's own keys included.
const toObject = {
  nodes: [
    { id: "initialPrompt-1", type: "initialPrompt", position: { x: 10, y: 20 }, data: { label: "Initial Prompt", prompt: "hi" },
      measured: { width: 200, height: 90 }, selected: false, dragging: false },
    { id: "textOutput-1", type: "textOutput", position: { x: 300, y: 20 }, data: { label: "Text Output", title: "" }, measured: { width: 200, height: 70 } },
  ],
  edges: [
    { id: "e-initialPrompt-1-output-textOutput-1-input", source: "initialPrompt-1", target: "textOutput-1", sourceHandle: "output", targetHandle: "input" },
  ],
  viewport: { x: -12.5, y: 40, zoom: 0.75 },
};

describe("the toObject() round trip", () => {
  it("reads back exactly what was stored", () => {
    const stored = JSON.parse(JSON.stringify(toObject)); // what the API returns as graph_data
    const back = fromGraphData(stored);
    expect(back).toEqual(toObject);
    expect(JSON.parse(JSON.stringify(back))).toEqual(stored);
  });

  it("tolerates empty and odd graph_data", () => {
    expect(fromGraphData({})).toEqual({ nodes: [], edges: [], viewport: DEFAULT_VIEWPORT });
    expect(fromGraphData(null)).toEqual({ nodes: [], edges: [], viewport: DEFAULT_VIEWPORT });
    const odd = fromGraphData({ nodes: [{ id: "a", type: "x" }, { nope: 1 }], edges: [{ source: "a", target: "b" }, { id: "e" }], viewport: { x: "1" } });
    expect(odd.nodes).toEqual([{ id: "a", type: "x", position: { x: 0, y: 0 }, data: {} }]);
    expect(odd.edges).toEqual([{ id: "e0", source: "a", target: "b" }]);
    expect(odd.viewport).toEqual(DEFAULT_VIEWPORT);
  });

  it("makes fresh node ids and stable JSON", () => {
    expect(nextNodeId("translator", ["translator-1", "translator-2"])).toBe("translator-3");
    expect(nextNodeId("wait", [])).toBe("wait-1");
    expect(stableJson({ b: 1, a: [1, { d: null, c: "x" }] })).toBe('{"a":[1,{"c":"x","d":null}],"b":1}');
  });
});
