# Sourced by scripts/dev and scripts/test: makes sure .venv exists at the repo root and holds
# what pyproject.toml asks for. Re-installs only when pyproject.toml changed (a stamp records
# its hash), so a second run costs a few milliseconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
EXTRAS="${CASCADE_EXTRAS:-test}"
STAMP="$VENV/.cascade-stamp-$EXTRAS"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# A stamp alone is not proof: a venv whose packages were removed under it must reinstall.
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ] \
   || ! "$VENV/bin/python" -c "import fastapi, sqlalchemy, pytest" >/dev/null 2>&1; then
  echo "Installing dependencies into .venv ..." >&2
  # pip's notes about this machine's extra local indexes are noise; errors still show.
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
  "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]" 2>&1 | grep -v "is ignored" >&2 || true
  "$VENV/bin/python" -c "import app, fastapi, sqlalchemy, pytest" >/dev/null
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
