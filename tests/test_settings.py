"""Settings (DESIGN.md §8): production refuses to start with the default secret or CORS `*`
(exit status not 0, one line saying why), and `.env.example` documents every setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.config import DEFAULT_JWT_SECRET, Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
BOOT = "from app.main import create_app; create_app(); print('created')"
REAL_SECRET = "a-real-production-secret-" + "k" * 40


def boot_all(tmp_path: Path, cases: dict[str, dict[str, str]]) -> dict[str, Result]:
    """`create_app()` in a fresh interpreter per case, all at once (each costs seconds of
    imports), configured only by the case's environment; run outside the repo so no .env
    file is read."""
    base = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    base.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    procs = {name: subprocess.Popen([sys.executable, "-c", BOOT], cwd=tmp_path,
                                    env={**base, **env}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, env in cases.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = Result(proc.returncode, stdout, stderr)
    return results


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def reason_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


# In a real interpreter: the exit status and the one line on stderr.
REFUSED = {
    "default-secret": ({"ENV": "production"}, "JWT_SECRET"),
    "cors-star": ({"ENV": "production", "JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "*"},
                  "CORS_ORIGINS"),
}
STARTS = {
    "production-safe": {"ENV": "production", "JWT_SECRET": REAL_SECRET,
                        "CORS_ORIGINS": "https://app.example.com,https://admin.example.com"},
}


def test_production_refuses_unsafe_settings_and_starts_with_safe_ones(tmp_path: Path) -> None:
    results = boot_all(tmp_path, {**{name: env for name, (env, _) in REFUSED.items()},
                                  **STARTS})
    for name, (_, reason) in REFUSED.items():
        result = results[name]
        assert result.returncode != 0, name
        assert "created" not in result.stdout, name
        assert len(result.reason_lines) == 1, (name, result.stderr)  # one line, no traceback
        assert reason in result.reason_lines[0], (name, result.stderr)
        assert "production" in result.reason_lines[0], name
    for name in STARTS:
        result = results[name]
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.strip() == "created", name


# In process, the same check for more configurations (cheap: no interpreter start-up).
@pytest.mark.parametrize(("values", "reason"), [
    ({}, "JWT_SECRET"),
    ({"JWT_SECRET": DEFAULT_JWT_SECRET}, "JWT_SECRET"),
    ({"JWT_SECRET": ""}, "JWT_SECRET"),
    ({"JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
    ({"JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "https://app.example.com, *"},
     "CORS_ORIGINS"),
], ids=["unset-secret", "default-secret", "empty-secret", "cors-star", "cors-list-with-star"])
def test_create_app_refuses_in_production(values: dict[str, str], reason: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(_env_file=None, ENV="production", **values)  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as info:
        create_app(settings)
    assert info.value.code not in (0, None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and reason in lines[0], lines


@pytest.mark.parametrize("values", [
    {"ENV": "development"},
    {"ENV": "development", "CORS_ORIGINS": "*"},
    {"ENV": "test", "JWT_SECRET": ""},
    {"ENV": "production", "JWT_SECRET": REAL_SECRET},
    {"ENV": "production", "JWT_SECRET": REAL_SECRET, "CORS_ORIGINS": "https://a.example"},
], ids=["dev-defaults", "dev-cors-star", "test-empty-secret", "prod-no-cors", "prod-origins"])
def test_create_app_starts(values: dict[str, str]) -> None:
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert create_app(settings).state.settings is settings


def test_production_problems_lists_every_reason() -> None:
    settings = Settings(_env_file=None, ENV="production", CORS_ORIGINS="*")
    problems = settings.production_problems()
    assert len(problems) == 2
    assert Settings(_env_file=None, ENV="production", JWT_SECRET=REAL_SECRET,
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
    from_example = Settings(_env_file=str(ENV_EXAMPLE))
    defaults = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()


GC_PROBE = """
import asyncio, gc, sys
from app.core.config import Settings
from app.main import create_app

async def main() -> None:
    settings = Settings(_env_file=None, ENV="test", DATABASE_URL=sys.argv[1],
                        JWT_SECRET="probe-" + "x" * 40, LOG_LEVEL="WARNING", **eval(sys.argv[2]))
    app = create_app(settings)
    default = gc.get_threshold()[0]
    async with app.router.lifespan_context(app):
        print(default, gc.get_threshold()[0], gc.get_freeze_count())

asyncio.run(main())
"""


@pytest.mark.parametrize(("values", "frozen", "gen0"), [
    ({}, True, 20_000),
    ({"GC_GEN0_THRESHOLD": 12_345}, True, 12_345),
    ({"GC_FREEZE_AFTER_STARTUP": False, "GC_GEN0_THRESHOLD": 0}, False, None),
], ids=["defaults", "threshold", "off"])
def test_gc_is_tuned_once_start_up_is_done(database_url: str, values: dict[str, object],
                                           frozen: bool, gen0: int | None) -> None:
    # In a child process: freezing the test process's heap would outlive this test.
    result = subprocess.run([sys.executable, "-c", GC_PROBE, database_url, repr(values)],
                            capture_output=True, text=True, timeout=120, check=True)
    default, after, freeze_count = map(int, result.stdout.split())
    assert after == (gen0 if gen0 is not None else default)
    assert (freeze_count > 1000) is frozen


def test_a_negative_gc_threshold_is_refused_with_the_setting_named() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="GC_GEN0_THRESHOLD"):
        Settings(_env_file=None, GC_GEN0_THRESHOLD=-1)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", [-1, 1001])
def test_a_pickup_linger_out_of_range_is_refused_with_the_setting_named(value: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="RUN_PICKUP_LINGER_MS"):
        Settings(_env_file=None, RUN_PICKUP_LINGER_MS=value)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", [0, -1])
def test_a_queue_log_retention_not_above_zero_is_refused_with_the_setting_named(
        value: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="QUEUE_LOG_RETENTION_H"):
        Settings(_env_file=None, QUEUE_LOG_RETENTION_H=value)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", [0, -1])
def test_a_pool_size_below_one_is_refused_with_the_setting_named(value: int) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="DB_POOL_SIZE"):
        Settings(_env_file=None, DB_POOL_SIZE=value)  # type: ignore[call-arg]
