import { useState } from "react";
import type { CatalogField, Component } from "../lib/catalog";

/** The fields every node has beside its executor's config (DESIGN.md §6). */
export const COMMON_FIELDS: CatalogField[] = [
  { name: "model", kind: "string", default: null, required: false, options: null, description: "Model override (else the node type's or the flow's default)" },
  { name: "timeout_s", kind: "number", default: null, required: false, options: null, description: "Per-attempt timeout in seconds" },
  { name: "max_attempts", kind: "integer", default: null, required: false, options: null, description: "Attempts for transient provider errors (≥ 1)" },
];

type Data = Record<string, unknown>;

export function ConfigPanel({ nodeId, component, data, onChange }: {
  nodeId: string; component: Component | undefined; data: Data; onChange: (data: Data) => void;
}) {
  const set = (name: string, value: unknown) => {
    const next = { ...data };
    if (value === undefined) delete next[name];
    else next[name] = value;
    onChange(next);
  };
  return (
    <div className="config">
      <label className="field">
        <span>Label</span>
        <input value={typeof data.label === "string" ? data.label : ""} onChange={(e) => set("label", e.target.value || undefined)} />
      </label>
      {component ? (
        <fieldset>
          <legend>{component.name} settings</legend>
          {component.fields.length === 0 && <p className="muted">No settings.</p>}
          {component.fields.map((f) => <Field key={f.name} nodeId={nodeId} field={f} value={data[f.name]} onChange={(v) => set(f.name, v)} />)}
        </fieldset>
      ) : <p className="form-error">Unknown node type: the catalog has no such component.</p>}
      <fieldset>
        <legend>Execution</legend>
        {COMMON_FIELDS.map((f) => <Field key={f.name} nodeId={nodeId} field={f} value={data[f.name]} onChange={(v) => set(f.name, v)} />)}
      </fieldset>
    </div>
  );
}

function Field({ nodeId, field, value, onChange }: { nodeId: string; field: CatalogField; value: unknown; onChange: (v: unknown) => void }) {
  const id = `cfg-${nodeId}-${field.name}`;
  const label = (
    <label htmlFor={id}>
      {field.name}{field.required && <span className="required" aria-label="required"> *</span>}
    </label>
  );
  const hint = field.description ? <small className="muted">{field.description}</small> : null;
  const placeholder = field.default !== null && field.default !== undefined ? String(typeof field.default === "object" ? JSON.stringify(field.default) : field.default) : "";

  let input: React.ReactNode;
  if (field.kind === "select" && field.options) {
    input = (
      <select id={id} value={value === undefined ? "" : String(value)} required={field.required}
              onChange={(e) => {
                const option = field.options?.find((o) => String(o) === e.target.value);
                onChange(e.target.value === "" ? undefined : option);
              }}>
        {!field.required && <option value="">(default{placeholder ? `: ${placeholder}` : ""})</option>}
        {field.options.map((o) => <option key={String(o)} value={String(o)}>{String(o)}</option>)}
      </select>
    );
  } else if (field.kind === "boolean") {
    input = <input id={id} type="checkbox" checked={value === undefined ? field.default === true : value === true} onChange={(e) => onChange(e.target.checked)} />;
  } else if (field.kind === "number" || field.kind === "integer") {
    input = <NumberField id={id} integer={field.kind === "integer"} min={field.name === "max_attempts" ? 1 : undefined}
                         value={value} placeholder={placeholder} required={field.required} onChange={onChange} />;
  } else if (field.kind === "text") {
    input = <textarea id={id} rows={4} value={typeof value === "string" ? value : ""} placeholder={placeholder} required={field.required} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />;
  } else if (field.kind === "object" || field.kind === "array" || field.kind === "any") {
    input = <JsonField id={id} value={value} placeholder={placeholder} onChange={onChange} />;
  } else {
    input = <input id={id} value={typeof value === "string" ? value : value === undefined ? "" : String(value)} placeholder={placeholder} required={field.required} onChange={(e) => onChange(e.target.value === "" ? undefined : e.target.value)} />;
  }
  return <div className="field">{label}{input}{hint}</div>;
}

function JsonField({ id, value, placeholder, onChange }: { id: string; value: unknown; placeholder: string; onChange: (v: unknown) => void }) {
  return (
    <textarea id={id} rows={3} defaultValue={value === undefined ? "" : JSON.stringify(value, null, 2)} placeholder={placeholder}
              onBlur={(e) => {
                const text = e.target.value.trim();
                if (!text) return onChange(undefined);
                try {
                  onChange(JSON.parse(text));
                  e.target.setCustomValidity("");
                } catch {
                  e.target.setCustomValidity("not valid JSON");
                  e.target.reportValidity();
                }
              }} />
  );
}

/** Keeps the typed text (a half-typed "0." is not a number yet) and sends numbers up. */
function NumberField({ id, integer, min, value, placeholder, required, onChange }: {
  id: string; integer: boolean; min?: number; value: unknown; placeholder: string; required: boolean; onChange: (v: unknown) => void;
}) {
  const [text, setText] = useState(typeof value === "number" ? String(value) : "");
  return (
    <input id={id} type="number" step={integer ? 1 : "any"} min={min} value={text} placeholder={placeholder} required={required}
           onChange={(e) => {
             setText(e.target.value);
             if (e.target.value === "") return onChange(undefined);
             const n = Number(e.target.value);
             if (Number.isFinite(n)) onChange(integer ? Math.trunc(n) : n);
           }} />
  );
}
