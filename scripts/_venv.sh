# Sourced by scripts/dev, scripts/test and scripts/bench: makes sure .venv exists at the repo
# root and holds exactly what uv.lock pins (the project itself editable, as `pip install -e .`
# leaves it, plus the extras in CASCADE_EXTRAS, default `test`). Syncs only when uv.lock,
# pyproject.toml or the extras changed (a stamp records their hash), so a second run costs a
# few milliseconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source "$ROOT/scripts/_uv.sh"
VENV="$ROOT/.venv"
EXTRAS="${CASCADE_EXTRAS:-test}"
STAMP="$VENV/.cascade-stamp"
want="$( (cat uv.lock pyproject.toml; echo "extras=$EXTRAS uv=$UV_VERSION") \
  | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  # Made by the system python3 (as before uv): it keeps pip, so a plugin can still be
  # installed by hand with `.venv/bin/python -m pip install`.
  python3 -m venv "$VENV"
fi
# A stamp alone is not proof: a venv whose packages were removed under it must be repaired,
# with --reinstall since uv trusts the metadata left behind. (find_spec looks the packages up
# without importing them, which would take a second.)
present='import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("app", "fastapi", "sqlalchemy", "pytest")))'
sync_args=()
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  sync_args=(--locked)
elif ! "$VENV/bin/python" -c "$present" >/dev/null 2>&1; then
  sync_args=(--locked --reinstall)
fi
if [ ${#sync_args[@]} -gt 0 ]; then
  echo "Installing dependencies into .venv from uv.lock ..." >&2
  IFS=',' read -ra extras <<< "$EXTRAS"
  for extra in "${extras[@]}"; do sync_args+=(--extra "$extra"); done
  # --locked: a pyproject.toml that no longer matches uv.lock stops here with uv's message
  # (run scripts/lock), instead of installing an older set than pyproject.toml asks for.
  # --compile-bytecode: as pip did, so each process does not compile every module again
  # (this machine sets PYTHONDONTWRITEBYTECODE, so nothing would ever be cached).
  "$UV" sync --quiet --compile-bytecode "${sync_args[@]}"
  "$VENV/bin/python" -c "import app, fastapi, sqlalchemy, pytest" >/dev/null
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
