"""Create a backoffice admin directly in the database (the first admin; DESIGN.md §3).

    python -m scripts.create_admin --email admin@example.com --username admin
    CASCADE_ADMIN_PASSWORD=… python -m scripts.create_admin --email … --username …
    python -m scripts.create_admin --email … --username … --password …   # shows in `ps`

Without --password and CASCADE_ADMIN_PASSWORD, the password is prompted for (twice) on a
terminal, or read as one line from stdin when stdin is a pipe. It connects to DATABASE_URL
(settings: the environment, then .env), which must already be migrated (`alembic upgrade
head`). Passwords are checked like the API checks them: 8 characters at least, never over
bcrypt's 72 bytes (refused, not truncated).

Exit status: 0 created, 1 an admin with that email or username exists, 2 invalid input or
no usable database.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import func, or_, select

from app.api.v1.schemas.auth import AdminCreate
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.security import hash_password
from app.models import BackofficeUser

PASSWORD_ENV = "CASCADE_ADMIN_PASSWORD"
EXIT_OK, EXIT_EXISTS, EXIT_INVALID = 0, 1, 2


class Refused(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def read_password(given: str | None) -> str:
    if given is not None:
        return given
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Admin password: ")
    if getpass.getpass("Again: ") != first:
        raise Refused("the passwords do not match", EXIT_INVALID)
    return first


def validate(email: str, username: str, password: str) -> AdminCreate:
    try:
        return AdminCreate(email=email, username=username, password=password)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'input'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors())
        raise Refused(f"invalid input: {problems}", EXIT_INVALID) from exc


async def create_admin(settings: Settings, data: AdminCreate) -> BackofficeUser:
    engine = create_engine(settings.DATABASE_URL, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            email = data.email.lower()
            taken = (await session.execute(select(BackofficeUser.id).where(
                or_(func.lower(BackofficeUser.email) == email,
                    func.lower(BackofficeUser.username) == data.username.lower())))).first()
            if taken is not None:
                raise Refused(f"an admin with email {email} or username {data.username} "
                              "already exists; nothing changed", EXIT_EXISTS)
            admin = BackofficeUser(
                email=email, username=data.username,
                password_hash=hash_password(data.password, settings.BCRYPT_ROUNDS))
            session.add(admin)
            await session.flush()
            return admin
    finally:
        await engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.create_admin",
        description="Create a backoffice admin in the database at DATABASE_URL.")
    parser.add_argument("--email", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", default=None,
                        help=f"prefer ${PASSWORD_ENV} or the prompt: arguments show in `ps`")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = validate(args.email, args.username, read_password(args.password))
        settings = Settings()
        admin = asyncio.run(create_admin(settings, data))
    except Refused as exc:
        print(f"create_admin: {exc}", file=sys.stderr)
        return exc.status
    except (OSError, ValueError) as exc:  # unreachable database, bad URL
        print(f"create_admin: cannot use the database: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:
        # A database that is reachable but not migrated, for one.
        print(f"create_admin: failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return EXIT_INVALID
    print(f"created admin id={admin.id} email={admin.email} username={admin.username}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
