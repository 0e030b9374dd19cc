# Sourced by scripts/_venv.sh and scripts/lock: puts the pinned uv at $UV.
#
# uv is bootstrapped with the system python3 into a small tool venv inside the checkout
# (.tools/uv-<version>/, git-ignored), from the `uv` package on the package index, which ships
# the same static binary as uv's own installer. Why this way:
# - the version is pinned here and in pyproject.toml ([tool.uv] required-version), so every
#   machine locks and installs with the same resolver; a uv of another version refuses to run
#   on this project instead of quietly writing a different lock;
# - a venv needs no root and touches nothing outside the checkout, where `pip install --user`
#   writes into the user's site-packages and ~/.local/bin (shared by every checkout, and
#   refused outright by distributions' externally-managed Pythons);
# - the installer script downloads a binary from outside the package index, which CI and
#   locked-down machines cannot reach.
# Changing the pin installs the new version beside the old one; delete .tools/ to clean up.
UV_VERSION=0.13.9
UV_TOOLS="$ROOT/.tools/uv-$UV_VERSION"
UV="$UV_TOOLS/bin/uv"
if [ ! -x "$UV" ]; then
  echo "Bootstrapping uv $UV_VERSION into ${UV_TOOLS#"$ROOT"/} ..." >&2
  rm -rf "$UV_TOOLS"
  python3 -m venv "$UV_TOOLS"
  # pip's notes about this machine's extra local indexes are noise; errors still show.
  "$UV_TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
    "uv==$UV_VERSION" 2>&1 | grep -v "is ignored" >&2 || true
  "$UV" --version >/dev/null
fi
# uv never downloads an interpreter of its own: .venv is made from the system python3.
export UV_PYTHON_DOWNLOADS=never
export CASCADE_UV="$UV"
