import { describe, expect, it } from "vitest";
import { rerunSet } from "./rerun";

const e = (source: string, target: string) => ({ source, target });

describe("the re-run set", () => {
  it("marks the trigger and its descendants will-run and their ancestors cached", () => {
    // a → b → c → d, x → c (x is an ancestor of c, which is in D), y unrelated, b → z
    const edges = [e("a", "b"), e("b", "c"), e("c", "d"), e("x", "c"), e("b", "z"), e("y", "y2")];
    const marks = rerunSet("b", edges);
    expect(Object.fromEntries([...marks].sort())).toEqual({
      a: "cached", b: "will-run", c: "will-run", d: "will-run", x: "cached", z: "will-run",
    });
    expect(marks.has("y")).toBe(false);
  });

  it("handles a lone trigger and diamonds", () => {
    expect([...rerunSet("solo", [])]).toEqual([["solo", "will-run"]]);
    const diamond = [e("s", "l"), e("s", "r"), e("l", "t"), e("r", "t")];
    const marks = rerunSet("l", diamond);
    expect(marks.get("s")).toBe("cached");
    expect(marks.get("r")).toBe("cached"); // an ancestor of t, which will run
    expect(marks.get("t")).toBe("will-run");
  });
});
