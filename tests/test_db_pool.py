"""The connection pool on both databases (app/core/db/engine.py): DB_POOL_SIZE connections at
most, opened as needed and kept. Overflow connections were closed at their first return to a
full pool, and under load an API replica opened (and PostgreSQL forked) new ones many times a
second."""

from __future__ import annotations

from typing import cast

import pytest
import sqlalchemy.exc
from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool

from app.core.db.engine import create_engine


async def test_the_pool_keeps_every_connection_it_opened_and_opens_no_more_than_its_size(
        database_url: str) -> None:
    engine = create_engine(database_url, pool_size=4, pool_timeout=0.3)
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda dbapi, _record: opened.append(dbapi))
    try:
        pool = cast(QueuePool, engine.sync_engine.pool)
        held = [await engine.connect() for _ in range(4)]
        for connection in held:  # each a connection of its own (PostgreSQL: a backend)
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
        assert len(opened) == 4
        with pytest.raises(sqlalchemy.exc.TimeoutError):  # no overflow past the size
            await engine.connect()
        for connection in held:
            await connection.close()
        assert pool.checkedin() == 4  # all kept, none closed on return
        for _ in range(3):  # used again and again: the same four, none opened anew
            again = [await engine.connect() for _ in range(4)]
            for connection in again:
                await connection.close()
        assert len(opened) == 4
    finally:
        await engine.dispose()
