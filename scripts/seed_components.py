"""Fill the component catalog from the executor registry (idempotent).

    python -m scripts.seed_components

The catalog is generated from the executor declarations, so it can never drift from the code;
the app also runs this at start-up.
"""

from __future__ import annotations

import asyncio
import sys

from app.core.config import get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.di.discovery import discover_executors
from app.modules.components.catalog import sync_catalog
from app.modules.execution.executors.api import as_specs


async def seed(database_url: str) -> int:
    executors = as_specs(discover_executors())
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            changed = await sync_catalog(session, executors)
    finally:
        await engine.dispose()
    print(f"component catalog: {len(executors)} types, {changed} changed")
    return changed


def main() -> int:
    asyncio.run(seed(get_settings().DATABASE_URL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
