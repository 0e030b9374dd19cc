"""Async alembic environment. One chain for SQLite (batch mode) and PostgreSQL.

The URL is `config.attributes["url"]` when a test or script passes one, else DATABASE_URL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

import app.models  # noqa: F401  (registers every table on Base.metadata)
from alembic import context
from app.core.config import get_settings
from app.core.db.base import Base, UTCDateTime, is_model_object
from app.core.db.engine import create_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return normalize_url(config.attributes.get("url") or get_settings().DATABASE_URL)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Our UTC wrapper is stored as a plain timezone-aware DateTime.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection | None = None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        include_name=is_model_object,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


# Replicas and workers each migrate at start-up (scripts/dev, scripts/worker): on PostgreSQL
# they take turns under this advisory lock, held by the migration's transaction, so the
# second finds the schema at head instead of racing the first to create it.
_MIGRATION_LOCK = 7_262_345_001


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
        context.run_migrations()


async def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
        return
    engine = create_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run_sync)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
