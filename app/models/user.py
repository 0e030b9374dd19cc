"""Accounts: users, backoffice admins and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db.base import Base, TimestampMixin


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    is_active: Mapped[bool] = mapped_column(default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last `user_seq` handed out for this user's events. Bumped with
    # UPDATE … RETURNING inside the transaction that writes the events, which row-locks it on
    # PostgreSQL, so concurrent writers can never allocate the same number.
    last_event_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


# Usernames are unique whatever their case ("Bob" and "bob" are one name; login matches them
# case-insensitively). The managers check first, but only the database can settle two
# concurrent sign-ups.
Index("uq_users_lower_username", func.lower(User.username), unique=True)


class BackofficeUser(TimestampMixin, Base):
    __tablename__ = "backoffice_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    is_active: Mapped[bool] = mapped_column(default=True)


Index("uq_backoffice_users_lower_username", func.lower(BackofficeUser.username), unique=True)


class RefreshToken(Base):
    """One issued refresh token (its jti). Rotation spends it; reuse revokes the family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True, default=None
    )
    admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("backoffice_users.id", ondelete="CASCADE"), index=True, default=None
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
