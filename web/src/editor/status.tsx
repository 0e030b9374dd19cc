// A node or run status as an icon AND a word: never colour alone (DESIGN.md §9).
const ICONS: Record<string, string> = {
  pending: "◷", queued: "◷", running: "⟳", completed: "✓", succeeded: "✓", failed: "✕",
  skipped: "⤼", cached: "⛁", cancelled: "⊘", partial: "◐",
};

export function StatusLabel({ status }: { status: string }) {
  return (
    <span className={`status status-${status}`}>
      {status === "running" ? <span className="spinner" aria-hidden="true" /> : <span className="status-icon" aria-hidden="true">{ICONS[status] ?? "•"}</span>}
      <span className="status-word">{status}</span>
    </span>
  );
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}
