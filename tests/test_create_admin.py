"""scripts/create_admin.py: the first backoffice admin, created straight in the database
(DESIGN.md §3), then logging in through the API."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest
from jose import jwt

from app.core.config import Settings
from scripts import create_admin

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "first-admin-password"


async def run_script(database_url: str, *args: str, stdin: str = "",
                     **env: str) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in Settings.model_fields and k != create_admin.PASSWORD_ENV}
    environment.update(PYTHONPATH=str(ROOT), DATABASE_URL=database_url, BCRYPT_ROUNDS="4",
                       **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.create_admin", *args, cwd=ROOT, env=environment,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_create_admin_then_log_in(client: httpx.AsyncClient, database_url: str,
                                        settings: Settings) -> None:
    # The password from a pipe on stdin.
    status, out, err = await run_script(
        database_url, "--email", "Root@Example.com", "--username", "root",
        stdin=PASSWORD + "\n")
    assert status == 0, err
    assert "created admin" in out and "root@example.com" in out
    assert PASSWORD not in out + err

    r = await client.post("/api/v1/auth/backoffice/login",
                          json={"identifier": "root", "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["admin"]["email"] == "root@example.com"
    claims = jwt.decode(r.json()["access_token"], settings.JWT_SECRET, algorithms=["HS256"])
    assert claims["role"] == "admin"
    # The admin can create the next admin through the API.
    r = await client.post("/api/v1/auth/backoffice/create",
                          json={"email": "second@example.com", "username": "second",
                                "password": "second-password"},
                          headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert r.status_code == 201, r.text

    # Running it again for the same admin (any case) changes nothing and says so.
    status, out, err = await run_script(
        database_url, "--email", "ROOT@example.com", "--username", "other",
        **{create_admin.PASSWORD_ENV: "another-password"})
    assert status == 1, (out, err)
    assert "already exists" in err
    assert "created" not in out
    r = await client.post("/api/v1/auth/backoffice/login",
                          json={"identifier": "root@example.com", "password": PASSWORD})
    assert r.status_code == 200
    r = await client.post("/api/v1/auth/backoffice/login",
                          json={"identifier": "other", "password": "another-password"})
    assert r.status_code == 401


@pytest.mark.parametrize(("args", "password", "needle"), [
    (["--email", "a@example.com", "--username", "admin"], "p" * 73, "72"),
    (["--email", "a@example.com", "--username", "admin"], "é" * 37, "72"),
    (["--email", "a@example.com", "--username", "admin"], "short", "password"),
    (["--email", "not-an-email", "--username", "admin"], PASSWORD, "email"),
    (["--email", "a@example.com", "--username", "bad name!"], PASSWORD, "username"),
], ids=["73-bytes", "multibyte-74-bytes", "too-short", "bad-email", "bad-username"])
def test_invalid_input_is_refused_before_the_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    args: list[str], password: str, needle: str,
) -> None:
    database = tmp_path / "never-created.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv(create_admin.PASSWORD_ENV, password)
    assert create_admin.main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not database.exists()
    # The --password argument is checked the same way.
    monkeypatch.delenv(create_admin.PASSWORD_ENV)
    assert create_admin.main([*args, "--password", password]) == 2


def test_an_unmigrated_database_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    monkeypatch.setenv(create_admin.PASSWORD_ENV, PASSWORD)
    assert create_admin.main(["--email", "a@example.com", "--username", "admin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("create_admin:") and err.count("\n") == 1
