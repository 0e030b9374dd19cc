"""Real queue-mode processes for the scale-out tests (DESIGN.md §10): API replicas and
workers started the README way, on one PostgreSQL database, each logging to its own file.

The cluster keeps two API replicas ("A", "B") and two workers alive: a test that kills or
stops one calls `ensure()` (the next test does too), which replaces whatever is gone and
waits until each process is really serving: an API answers /health and its fan-out
listener is in pg_stat_activity; a worker has its cancel listener there and has recorded
itself in `workers`. Every process runs in its own session (process group), so teardown
kills what a launcher script left behind too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import ROOT, free_port

JWT_SECRET = "scale-out-secret-" + "x" * 32
READY_WITHIN_S = 90.0  # process start-up on two busy cores (imports, alembic, seeding)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.asynccontextmanager
async def pg(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Proc:
    """One child process, its log file, and (APIs) its port."""

    name: str
    role: str  # "api" or "worker"
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            out.write(f"==== {' '.join(self.argv)}\n".encode())
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def listener_name(self) -> str:
        """The application_name of its LISTEN connection (app/core/db/listener.py). The
        launcher scripts `exec` python, so the pid is the server's own."""
        return f"cascade-{self.role}-{self.pid}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """kill -9 the process and its whole group, and reap it."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def terminate(self) -> None:
        """Ask it to stop (SIGCONT first, in case a test froze it); `stop` waits."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGTERM)

    def stop(self, within: float = 15.0) -> int | None:
        """SIGTERM (after SIGCONT, in case a test froze it); kill -9 if it lingers.
        Returns the exit code of a clean stop, None when it had to be killed."""
        if self.popen is None:
            return None
        if self.popen.poll() is not None:
            self.kill()  # leftovers of its group, if any
            return self.popen.returncode
        self.terminate()
        try:
            code: int | None = self.popen.wait(within)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        return code

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    database_url: str  # postgresql+asyncpg://…
    tmp: Path
    settings: dict[str, str]
    apis: dict[str, Proc] = field(default_factory=dict)
    workers: list[Proc] = field(default_factory=list)
    retired: list[Proc] = field(default_factory=list)
    _serial: int = 0

    # --- environment and launching -----------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PYTEST_")}
        env.update({"EXECUTION_MODE": "queue", "DATABASE_URL": self.database_url,
                    "JWT_SECRET": JWT_SECRET, "BCRYPT_ROUNDS": "4", "ENV": "test",
                    "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
        env.update(self.settings)
        env.update(overrides)
        return env

    def _log(self, name: str) -> Path:
        self._serial += 1
        return self.tmp / f"{self._serial:02d}-{name}.log"

    def start_api(self, name: str, *, scripts_dev: bool) -> Proc:
        port = free_port()
        if scripts_dev:  # exactly as the README runs a replica
            argv = [str(ROOT / "scripts" / "dev")]
        else:  # the same server without alembic and seeding: faster to restart
            argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                    "--host", "127.0.0.1", "--port", str(port), "--ws-ping-interval", "0"]
        proc = Proc(name, "api", argv, self.env(PORT=str(port), HOST="127.0.0.1"),
                    self._log(f"api-{name}"), port=port).start()
        self.apis[name] = proc
        return proc

    def start_worker(self, *, script: bool) -> Proc:
        argv = ([str(ROOT / "scripts" / "worker")] if script
                else [sys.executable, "-m", "app.worker"])
        name = f"worker{self._serial + 1}"
        proc = Proc(name, "worker", argv, self.env(), self._log(name)).start()
        self.workers.append(proc)
        return proc

    def retire(self, proc: Proc) -> None:
        """Forget a worker a test killed or stopped (teardown still reaps it)."""
        if proc in self.workers:
            self.workers.remove(proc)
        self.retired.append(proc)

    # --- readiness ---------------------------------------------------------------------------
    async def ensure(self, within: float = READY_WITHIN_S) -> None:
        """Two live API replicas and two live workers, each serving."""
        starting: list[Proc] = []
        for name, scripts_dev in (("A", True), ("B", False)):
            api = self.apis.get(name)
            if api is None or not api.alive:
                if api is not None:
                    self.retired.append(api)
                starting.append(self.start_api(name, scripts_dev=scripts_dev))
        for proc in [w for w in self.workers if not w.alive]:
            self.retire(proc)
        while len(self.workers) < 2:
            # The first worker exactly as the README starts one; replacements skip alembic.
            first = not self.workers and not self.retired
            starting.append(self.start_worker(script=first))
        await asyncio.gather(*(self.wait_ready(proc, within) for proc in
                               [*self.apis.values(), *self.workers]))

    async def wait_ready(self, proc: Proc, within: float = READY_WITHIN_S) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if not proc.alive:
                    code = proc.popen.returncode if proc.popen else None
                    raise AssertionError(f"{proc.name} exited with {code}:\n"
                                         f"{proc.log_text()[-4000:]}")
                if await self._is_ready(proc, http):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{proc.name} not ready in {within}s:\n"
                                         f"{proc.log_text()[-4000:]}")
                await asyncio.sleep(0.2)

    async def _is_ready(self, proc: Proc, http: httpx.AsyncClient) -> bool:
        if proc.role == "api":
            try:
                response = await http.get(f"{proc.url}/health")
            except httpx.HTTPError:
                return False
            if response.status_code != 200:
                return False
        async with pg(self.database_url) as conn:
            listening = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                proc.listener_name)
            if not listening:
                return False
            if proc.role == "worker":
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM workers WHERE pid = $1 "
                    "AND seen_at > now() - interval '2 seconds'", proc.pid))
        return True

    def worker_by_pid(self, pid: int) -> Proc:
        for proc in self.workers:
            if proc.pid == pid:
                return proc
        raise AssertionError(f"no live worker has pid {pid}: "
                             f"{[w.pid for w in self.workers]}")

    def logs(self) -> str:
        """Every process's log tail, for assertion messages."""
        procs = [*self.apis.values(), *self.workers, *self.retired]
        return "\n".join(f"---- {p.name} (pid {p.popen and p.pid})\n{p.log_text()[-3000:]}"
                         for p in procs)

    def shutdown(self) -> None:
        procs = [*self.workers, *self.apis.values(), *self.retired]
        for proc in procs:  # all at once: each one's graceful stop takes a moment
            proc.terminate()
        for proc in procs:
            proc.stop()
