import { byCategory, type Component } from "../lib/catalog";

export const DRAG_TYPE = "application/x-cascade-node";

export function Palette({ components, onAdd }: { components: Component[]; onAdd: (type: string) => void }) {
  return (
    <aside className="palette" aria-label="Node palette">
      <h2>Nodes</h2>
      {byCategory(components).map(([category, items]) => (
        <section key={category}>
          <h3>{category}</h3>
          <ul>
            {items.map((c) => (
              <li key={c.type}>
                <button type="button" data-testid={`palette-item-${c.type}`} draggable
                        title={`${c.description} — click to add, or drag onto the canvas`}
                        onClick={() => onAdd(c.type)}
                        onDragStart={(e) => {
                          e.dataTransfer.setData(DRAG_TYPE, c.type);
                          e.dataTransfer.setData("text/plain", c.type);
                          e.dataTransfer.effectAllowed = "move";
                        }}>
                  <span className="palette-name">{c.name}</span>
                  <span className="palette-ports">
                    {c.ports.map((p) => <span key={`${p.direction}-${p.name}`} className={`port-chip port-chip-${p.kind}`}>{p.direction === "input" ? "→" : ""}{p.name}{p.direction === "output" ? "→" : ""}</span>)}
                  </span>
                </button>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </aside>
  );
}
