"""App factory and lifespan. Boot: logging → discovery → database check → recovery."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.api.cors import ErrorShapeCORSMiddleware
from app.api.openapi import install_openapi
from app.api.web import install_web
from app.core.bus import EventBus
from app.core.bus.fanout import TunnelFanout
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.db.process_lock import DatabaseInUse, hold_database, release
from app.core.di import Registry
from app.core.di.discovery import Discovered, discover
from app.core.errors import install_error_handlers
from app.core.gc_tuning import tune_gc
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.security import PasswordHasher
from app.core.ws import ConnectionManager
from app.modules.components.catalog import sync_catalog
from app.modules.execution.executors.api import as_specs

logger = logging.getLogger("cascade.main")


class StartupRefused(SystemExit):
    pass


def check_production(settings: Settings) -> None:
    problems = settings.mode_problems()
    if problems:
        print(f"cascade: refusing to start: {'; '.join(problems)}", file=sys.stderr)
        raise StartupRefused(2)
    problems = settings.production_problems()
    if problems:
        print(f"cascade: refusing to start in production: {'; '.join(problems)}",
              file=sys.stderr)
        raise StartupRefused(2)


def core_registry(settings: Settings, discovered: Discovered, engine: AsyncEngine) -> Registry:
    """What every process holds (the API and the workers): settings, the database, the bus.
    In queue mode the bus sends wake-up hints with every event write (DESIGN.md §10)."""
    sessionmaker = create_sessionmaker(engine)
    registry = Registry()
    registry.put(Settings, settings)
    registry.put(Discovered, discovered)
    registry.put(async_sessionmaker, sessionmaker)
    registry.put(EventBus, EventBus(sessionmaker, registry, batch_max=settings.EVENT_BATCH_MAX,
                                    hints=settings.EXECUTION_MODE == "queue"))
    registry.put(ConnectionManager, ConnectionManager(settings.WS_MAX_TUNNELS_PER_USER))
    return registry


def build_router(discovered: Discovered) -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    for _name, router in sorted(discovered.routers.items()):
        api.include_router(router)
    return api


def _hold_database(settings: Settings) -> IO[str] | None:
    try:
        return hold_database(settings.DATABASE_URL)
    except DatabaseInUse as exc:
        print(f"cascade: refusing to start: {exc}", file=sys.stderr)
        raise


def _lifespan(discovered: Discovered):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def serve(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        configure_logging(settings.LOG_LEVEL)
        engine = create_engine(settings.DATABASE_URL, pool_size=settings.DB_POOL_SIZE,
                               pool_timeout=settings.DB_POOL_TIMEOUT_S)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        registry = core_registry(settings, discovered, engine)
        sessionmaker = registry.get(async_sessionmaker)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.registry = registry
        hasher = PasswordHasher(settings.BCRYPT_ROUNDS, settings.PASSWORD_HASH_THREADS)
        registry.put(PasswordHasher, hasher)
        bus = registry.get(EventBus)
        for subscription in discovered.handlers:
            bus.add_subscriber(subscription.patterns, subscription.handler)
        bus.start()
        managers: list[Any] = []
        for _domain, cls in sorted(discovered.managers.items()):
            instance = cls(registry)
            registry.put(cls, instance)
            managers.append(instance)
        async with sessionmaker() as session, session.begin():
            await sync_catalog(session, as_specs(discovered.executors))
        # Managers with start-up work (closing interrupted runs) do it before serving.
        for instance in managers:
            if hasattr(instance, "startup"):
                await instance.startup()
        fanout = None
        if settings.EXECUTION_MODE == "queue":
            # This replica's tunnels hear events that workers and other replicas write.
            fanout = TunnelFanout(registry.get(ConnectionManager), sessionmaker,
                                  settings.DATABASE_URL, poll_s=settings.FANOUT_POLL_S,
                                  name=f"cascade-api-{os.getpid()}")
            registry.put(TunnelFanout, fanout)
            fanout.start()
        tune_gc(freeze=settings.GC_FREEZE_AFTER_STARTUP,
                gen0_threshold=settings.GC_GEN0_THRESHOLD)
        logger.info("cascade ready (%s mode): %d routers, %d managers, %d handlers, "
                    "%d executors", settings.EXECUTION_MODE,
                    len(discovered.routers), len(discovered.managers),
                    len(discovered.handlers), len(discovered.executors))
        try:
            yield
        finally:
            if fanout is not None:
                await fanout.stop()
            for instance in reversed(managers):
                if hasattr(instance, "shutdown"):
                    await instance.shutdown()
            await registry.get(ConnectionManager).close_all()
            await bus.stop()
            await engine.dispose()
            hasher.close()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_lock = _hold_database(app.state.settings)
        try:
            async with serve(app):
                yield
        finally:
            release(database_lock)

    return lifespan


def create_app(settings: Settings | None = None, *, include_plugins: bool = True) -> FastAPI:
    settings = settings or get_settings()
    check_production(settings)
    configure_logging(settings.LOG_LEVEL)
    discovered = discover(include_plugins=include_plugins)
    app = FastAPI(title="Cascade", version="0.1.0", lifespan=_lifespan(discovered))
    app.state.settings = settings
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(build_router(discovered))
    # /health also at the root, for load balancers.
    app.include_router(discovered.routers["health"])
    install_web(app)  # last: the page's catch-all route for every non-API path
    # Always installed: with CORS_ORIGINS empty no origin is allowed, and a foreign preflight
    # still gets its 403 in the error shape (simple requests pass untouched either way).
    app.add_middleware(ErrorShapeCORSMiddleware, allow_origins=settings.CORS_ORIGINS,
                       allow_credentials="*" not in settings.CORS_ORIGINS,
                       allow_methods=["*"], allow_headers=["*"],
                       expose_headers=["X-Request-ID"])
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.MAX_BODY_BYTES)
    return app
