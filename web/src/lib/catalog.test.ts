import { describe, expect, it } from "vitest";
import { byCategory, defaultConfig, isCompatible, parseCatalog } from "./catalog";
import { matchesType } from "./eventFilter";
import { matchRoute } from "./router";

const catalog = parseCatalog([
  { type: "initialPrompt", name: "Initial Prompt", category: "Prompts", description: "",
    fields: [{ name: "prompt", kind: "text", default: "", required: false, options: null }, { name: "temperature", kind: "number", default: null }],
    ports: [{ name: "input", direction: "input", kind: "text" }, { name: "adapters", direction: "input", kind: "adapter" }, { name: "output", direction: "output", kind: "text" }] },
  { type: "sceneBuilder", name: "Scene Builder", category: "Sources", fields: [{ name: "preset", kind: "select", default: "none", options: ["none", "noir"] }],
    ports: [{ name: "adapter", direction: "output", kind: "adapter" }] },
  { nope: true },
]);
const byType = new Map(catalog.map((c) => [c.type, c]));
const types: Record<string, string> = { p1: "initialPrompt", p2: "initialPrompt", s: "sceneBuilder" };
const typeOf = (id: string) => types[id];

describe("the catalog", () => {
  it("parses entries and skips what is not one", () => {
    expect(catalog.map((c) => c.type)).toEqual(["initialPrompt", "sceneBuilder"]);
    expect(byCategory(catalog).map(([c]) => c)).toEqual(["Prompts", "Sources"]);
    expect(defaultConfig(catalog[1]!)).toEqual({ preset: "none" });
    expect(defaultConfig(catalog[0]!)).toEqual({ prompt: "" });
  });

  it("accepts text→text and adapter→adapter, refuses mixed kinds and self loops", () => {
    expect(isCompatible({ source: "p1", target: "p2", sourceHandle: "output", targetHandle: "input" }, typeOf, byType)).toBe(true);
    expect(isCompatible({ source: "s", target: "p1", sourceHandle: "adapter", targetHandle: "adapters" }, typeOf, byType)).toBe(true);
    expect(isCompatible({ source: "s", target: "p1", sourceHandle: "adapter", targetHandle: "input" }, typeOf, byType)).toBe(false);
    expect(isCompatible({ source: "p1", target: "p2", sourceHandle: "output", targetHandle: "adapters" }, typeOf, byType)).toBe(false);
    expect(isCompatible({ source: "p1", target: "p1", sourceHandle: "output", targetHandle: "input" }, typeOf, byType)).toBe(false);
    expect(isCompatible({ source: "p1", target: "ghost", sourceHandle: "output", targetHandle: "input" }, typeOf, byType)).toBe(false);
  });
});

describe("routes and event filters", () => {
  it("matches the page's routes (DESIGN.md §9)", () => {
    expect(matchRoute("/")).toEqual({ name: "home" });
    expect(matchRoute("/login")).toEqual({ name: "login" });
    expect(matchRoute("/signup")).toEqual({ name: "signup" });
    expect(matchRoute("/events")).toEqual({ name: "events" });
    expect(matchRoute("/flows/abc")).toEqual({ name: "flow", flowId: "abc", runId: null });
    expect(matchRoute("/flows/abc/runs/r1")).toEqual({ name: "flow", flowId: "abc", runId: "r1" });
    expect(matchRoute("/flows")).toEqual({ name: "not-found" });
  });

  it("filters types like the server", () => {
    expect(matchesType("flow.created", "flow.*")).toBe(true);
    expect(matchesType("flow", "flow.*")).toBe(true);
    expect(matchesType("execution.node.status", "execution.")).toBe(true);
    expect(matchesType("execution.started", "flow.*")).toBe(false);
    expect(matchesType("anything", "")).toBe(true);
  });
});
