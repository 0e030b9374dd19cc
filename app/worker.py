"""`scripts/worker`: a queue-mode worker process (DESIGN.md §10).

Settings come from the environment (and `.env`) like the API's; `EXECUTION_MODE=queue` and a
PostgreSQL `DATABASE_URL` are required. `--migrate` (scripts/worker passes it) runs
`alembic upgrade head` once those checks pass, before serving. The process runs runs and
nothing else: no HTTP, no tunnels. SIGTERM or SIGINT stops it cleanly: the runs it holds
are cancelled and recorded.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys

from sqlalchemy import text

from app.core.bus import EventBus
from app.core.config import Settings, get_settings
from app.core.db import create_engine
from app.core.di.discovery import discover
from app.core.logging import configure_logging
from app.main import StartupRefused, check_production, core_registry
from app.modules.execution.manager import ExecutionManager
from app.modules.execution.worker import RunWorker

logger = logging.getLogger("cascade.worker")


def worker_engine_settings(settings: Settings) -> dict[str, str]:
    """A worker frozen inside a transaction (SIGSTOP, a long GC pause) must not hold its
    rows' locks for ever: PostgreSQL ends such a session after half a lease, so the worker
    that takes the run over is never blocked for longer than that."""
    timeout_ms = max(1000, int(settings.RUN_LEASE_S * 500))
    return {"idle_in_transaction_session_timeout": str(timeout_ms),
            "application_name": "cascade-worker"}


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    engine = create_engine(settings.DATABASE_URL, pool_size=settings.DB_POOL_SIZE,
                           pool_timeout=settings.DB_POOL_TIMEOUT_S,
                           server_settings=worker_engine_settings(settings))
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    registry = core_registry(settings, discover(include_plugins=True), engine)
    bus = registry.get(EventBus)
    bus.start()
    execution = ExecutionManager(registry)
    registry.put(ExecutionManager, execution)
    worker = RunWorker(registry, execution)
    registry.put(RunWorker, worker)
    try:
        await worker.serve(stop)
    finally:
        await bus.stop()
        await execution.providers.aclose()
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    try:
        check_production(settings)
    except StartupRefused as exc:
        sys.exit(exc.code)
    if settings.EXECUTION_MODE != "queue":
        print("cascade: refusing to start: scripts/worker serves EXECUTION_MODE=queue "
              "(PostgreSQL); in the default inline mode the API process runs the runs",
              file=sys.stderr)
        sys.exit(2)
    if "--migrate" in sys.argv[1:]:
        # scripts/worker: migrate only once the configuration is one a worker serves, so a
        # refused start leaves the database (or a SQLite file it would create) untouched.
        migrated = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"],
                                  check=False)
        if migrated.returncode != 0:
            sys.exit(migrated.returncode)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    try:
        import uvloop
    except ImportError:  # optional; it comes with uvicorn[standard], as for the API
        asyncio.run(run())
    else:
        uvloop.run(run())


if __name__ == "__main__":
    main()
