"""Inline mode on the embedded SQLite default is one process per database file (DESIGN.md
§10): a second process on the same file refuses to start with a clear message, and a process
that died never blocks its successor (the kernel drops its lock)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.core.db.process_lock import DatabaseInUse, hold_database, release, sqlite_lock_path
from tests.conftest import ROOT, free_port

JWT = "test-secret-" + "x" * 32


def test_a_second_holder_is_refused_and_a_released_lock_is_free_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    first = hold_database(url)
    assert first is not None
    with pytest.raises(DatabaseInUse, match=rf"pid {os.getpid()}.*one process per database"):
        hold_database(url)
    release(first)
    again = hold_database(url)
    assert again is not None
    release(again)


def test_postgres_and_memory_databases_take_no_file_lock() -> None:
    assert sqlite_lock_path("postgresql://postgres@127.0.0.1:5432/test") is None
    assert sqlite_lock_path("sqlite+aiosqlite:///:memory:") is None
    assert hold_database("sqlite://") is None


async def _serve(database_url: str, log: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {**os.environ, "ENV": "test", "DATABASE_URL": database_url, "JWT_SECRET": JWT,
           "BCRYPT_ROUNDS": "4", "LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return process, port


async def _until_healthy(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
        deadline = time.monotonic() + 60
        while True:
            assert process.returncode is None, log.read_text()  # noqa: ASYNC240 (failure only)
            try:
                if (await c.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(
    database_url: str, tmp_path: Path,
) -> None:
    first, port = await _serve(database_url, tmp_path / "first.log")
    try:
        await _until_healthy(first, port, tmp_path / "first.log")
        second, _ = await _serve(database_url, tmp_path / "second.log")
        code = await asyncio.wait_for(second.wait(), 60)
        assert code != 0
        output = (tmp_path / "second.log").read_text()
        assert f"cascade: refusing to start: another Cascade process (pid {first.pid})" in output
        assert "one process per database file" in output
        # The first one was not disturbed.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            assert (await c.get("/health")).status_code == 200
    finally:
        first.send_signal(signal.SIGKILL)  # no shutdown: the kernel must drop the lock
        await asyncio.wait_for(first.wait(), 10)
    third, port = await _serve(database_url, tmp_path / "third.log")
    try:
        await _until_healthy(third, port, tmp_path / "third.log")
    finally:
        third.terminate()
        await asyncio.wait_for(third.wait(), 20)
