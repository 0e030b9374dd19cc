"""One process per SQLite file (DESIGN.md §10, inline mode).

Runs execute inside the process that accepted them, and start-up closes every run it finds
`running` as interrupted: a second process on the same file would kill its sibling's live
runs, and their tunnels would never hear each other's events. So the first process holds an
exclusive lock on `<database>.lock` for its lifetime, and a second one refuses to start. The
kernel drops the lock when the holder dies, so a crashed process never blocks its successor.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine.url import make_url

from app.core.db.engine import normalize_url


class DatabaseInUse(RuntimeError):
    pass


def sqlite_lock_path(url: str) -> Path | None:
    """Where the lock of a SQLite file database lives; None for PostgreSQL or :memory:."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database).resolve()
    return database.with_name(database.name + ".lock")


def hold_database(url: str) -> IO[str] | None:
    """Take the process lock of a SQLite database (released by `release` or at exit);
    raises DatabaseInUse, naming the holder, when another process has it."""
    path = sqlite_lock_path(url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DatabaseInUse(
            f"another Cascade process (pid {holder}) serves {path.with_suffix('')}; the "
            "embedded SQLite default runs one process per database file "
            "(EXECUTION_MODE=inline). Stop it, or use PostgreSQL to run more.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release(handle: IO[str] | None) -> None:
    if handle is not None:
        handle.close()  # closing the file drops the flock
