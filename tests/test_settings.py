"""Settings (DESIGN.md §8): production refuses to start with the default secret or CORS `*`
(exit status not 0, one line saying why), and `.env.example` documents every setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.config import DEFAULT_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parent.parent
BOOT = "from app.main import create_app; create_app(); print('created')"
REAL_SECRET = "a-real-production-secret-" + "k" * 40


def boot(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`create_app()` in a fresh interpreter, configured only by `env` (run outside the repo
    so no .env file is read)."""
    clean = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    clean.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db",
                 **env)
    return subprocess.run([sys.executable, "-c", BOOT], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=60)


def reason_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "JWT_SECRET"),
    ({"JWT_SECRET": DEFAULT_JWT_SECRET}, "JWT_SECRET"),
    ({"JWT_SECRET": ""}, "JWT_SECRET"),
    ({"JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
    ({"JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "https://app.example.com,*"}, "CORS_ORIGINS"),
], ids=["default-secret", "explicit-default-secret", "empty-secret", "cors-star",
        "cors-list-with-star"])
def test_production_refuses_unsafe_settings(tmp_path: Path, env: dict[str, str],
                                            reason: str) -> None:
    result = boot(tmp_path, ENV="production", **env)
    assert result.returncode != 0
    assert "created" not in result.stdout
    lines = reason_lines(result)
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert reason in lines[0]
    assert "production" in lines[0]


def test_production_with_a_real_secret_and_explicit_origins_starts(tmp_path: Path) -> None:
    result = boot(tmp_path, ENV="production", JWT_SECRET=REAL_SECRET,
                  CORS_ORIGINS="https://app.example.com,https://admin.example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "created"


def test_development_starts_with_the_defaults(tmp_path: Path) -> None:
    result = boot(tmp_path, ENV="development", CORS_ORIGINS="*")
    assert result.returncode == 0, result.stderr


def test_production_problems_lists_every_reason() -> None:
    settings = Settings(_env_file=None, ENV="production", CORS_ORIGINS="*")  # type: ignore[call-arg]
    problems = settings.production_problems()
    assert len(problems) == 2
    assert Settings(_env_file=None, ENV="production", JWT_SECRET=REAL_SECRET,  # type: ignore[call-arg]
                    CORS_ORIGINS="https://a.example").production_problems() == []


# --- .env.example ----------------------------------------------------------------------------

ENV_EXAMPLE = ROOT / ".env.example"
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> list[tuple[str, str, str]]:
    """(name, value, comment above it) for every assignment in .env.example."""
    entries = []
    comment = ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            entries.append((match.group(1), match.group(2), comment))
            comment = ""
        elif line.startswith("#"):
            comment = line.lstrip("# ").strip()
        elif not line.strip():
            comment = ""
    return entries


def test_env_example_lists_every_setting_once_with_a_comment() -> None:
    entries = env_example()
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(names) == set(Settings.model_fields), (
        f"missing: {sorted(set(Settings.model_fields) - set(names))}; "
        f"unknown: {sorted(set(names) - set(Settings.model_fields))}")
    for name, _, comment in entries:
        assert comment and not comment.startswith("---"), f"{name} has no comment line"


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    from_example = Settings(_env_file=str(ENV_EXAMPLE))  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_example.model_dump() == defaults.model_dump()
