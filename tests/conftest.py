"""Shared fixtures: a fresh migrated database per test (SQLite and PostgreSQL), the app, an
ASGI client, and a real uvicorn server on a free loopback port.

Every database is built by `alembic upgrade head` once per session into a template, then
copied per test (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL), so each
test starts from the migrations, isolated, in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alembic import command
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.main import create_app
from tests.fake_llm_server import FakeLLMServer, start_fake_llm_server

ROOT = Path(__file__).resolve().parent.parent
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL",
                                   "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    config.attributes["url"] = url
    return config


def _pg_url(database: str) -> str:
    base, _, _ = TEST_POSTGRES_URL.rpartition("/")
    return f"{base}/{database}"


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_dsn(TEST_POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncio.wait_for(asyncpg.connect(_pg_dsn(TEST_POSTGRES_URL)), 5)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


class Databases:
    """Makes fresh migrated databases from per-session templates."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sqlite_template: Path | None = None
        self.pg_template: str | None = None
        self.pg_ok: bool | None = None
        self.run_id = uuid.uuid4().hex[:8]
        self.created_pg: list[str] = []

    def sqlite(self) -> str:
        if self.sqlite_template is None:
            self.sqlite_template = self.tmp / "template.db"
            command.upgrade(alembic_config(f"sqlite+aiosqlite:///{self.sqlite_template}"), "head")
        path = self.tmp / f"db-{uuid.uuid4().hex[:10]}.db"
        shutil.copy(self.sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"

    def postgres(self) -> str:
        if self.pg_ok is None:
            self.pg_ok = postgres_available()
        if not self.pg_ok:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL unreachable at {TEST_POSTGRES_URL} and "
                            "REQUIRE_POSTGRES=1")
            pytest.skip(f"PostgreSQL unreachable at {TEST_POSTGRES_URL}")
        if self.pg_template is None:
            self.pg_template = f"cascade_tpl_{self.run_id}"
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_template}"'))
            asyncio.run(_pg_admin(f'CREATE DATABASE "{self.pg_template}"'))
            self.created_pg.append(self.pg_template)
            command.upgrade(alembic_config(_pg_url(self.pg_template)), "head")
        name = f"cascade_t_{self.run_id}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.pg_template}"'))
        self.created_pg.append(name)
        return _pg_url(name)

    def drop_all(self) -> None:
        async def drop() -> None:
            for name in reversed(self.created_pg):
                try:
                    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception:
                    pass

        if self.created_pg:
            asyncio.run(drop())


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("dbs"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, databases: Databases) -> str:
    return databases.sqlite() if backend == "sqlite" else databases.postgres()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENV": "test", "DATABASE_URL": database_url, "JWT_SECRET": "test-secret-" + "x" * 32,
        "BCRYPT_ROUNDS": 4, "LOG_LEVEL": "WARNING", "LLM_TOKEN_STREAM": True,
        # Hundreds of apps start in one test process: freezing each one's heap would keep
        # every earlier test's cyclic garbage forever. test_settings covers the setting.
        "GC_FREEZE_AFTER_STARTUP": False, "GC_GEN0_THRESHOLD": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def sqlite_url(databases: Databases) -> str:
    """A fresh migrated SQLite file (migrated outside the test's event loop)."""
    return databases.sqlite()


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on `sqlite_url`'s file, on an engine of the test's own."""
    engine = create_engine(sqlite_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrization) to change settings."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(database_url, **settings_overrides)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A real uvicorn serving the app on 127.0.0.1, in the test's event loop."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.port = free_port()
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
            ws_max_size=settings.WS_MAX_FRAME_BYTES + 1024, ws_ping_interval=None,
        )
        self.server = uvicorn.Server(self.config)
        self.task: asyncio.Task[None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, 15)


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    server = LiveServer(create_app(settings), settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def live_client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.http_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLMServer]:
    """A real fake OpenAI/Anthropic server on 127.0.0.1, one per test module."""
    server = start_fake_llm_server()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLMServer) -> FakeLLMServer:
    fake_llm_server.reset()
    return fake_llm_server
