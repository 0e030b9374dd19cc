import { createContext, useContext } from "react";
import type { Component } from "../lib/catalog";
import type { RerunMark } from "../lib/rerun";
import type { RunStore } from "../lib/runStore";

export interface Problem {
  node_id?: string | null;
  edge_id?: string | null;
  /** A cycle's nodes, in order. */
  nodes?: string[] | null;
  code: string;
  message: string;
}

export interface EditorContextValue {
  store: RunStore;
  catalog: Map<string, Component>;
  rerun: Map<string, RerunMark> | null;
  stale: Set<string>;
  problemsByNode: Map<string, Problem[]>;
  problemsByEdge: Map<string, Problem[]>;
  /** Node ids → display names, for "skipped because <node>". */
  labelOf: (id: string) => string;
}

export const EditorContext = createContext<EditorContextValue | null>(null);

export function useEditor(): EditorContextValue {
  const value = useContext(EditorContext);
  if (!value) throw new Error("EditorContext missing");
  return value;
}
