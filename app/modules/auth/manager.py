"""Login, refresh-token rotation with reuse detection, and backoffice admins."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.bus import EventBus
from app.core.config import Settings
from app.core.db.base import utcnow
from app.core.di import Registry
from app.core.errors import Conflict, TooManyRequests, Unauthorized
from app.core.events import Event, EventTypes
from app.core.ratelimit import DatabaseLimiter, Limiter, MemoryLimiter
from app.core.security import (
    InvalidToken,
    PasswordHasher,
    Role,
    create_token,
    decode_token,
    token_digest,
)
from app.models import BackofficeUser, RefreshToken, User

logger = logging.getLogger("cascade.auth")

# One answer for "no such account" and "wrong password": nothing to tell them apart.
_BAD_CREDENTIALS = "invalid credentials"


@dataclass
class _LoginKeys:
    """A login attempt's rate-limit keys: the identifier (and, once known, the account)
    against the per-identifier budget, the client address against the per-address one."""

    identifier: list[str]
    address: str


class AuthManager:
    def __init__(self, registry: Registry) -> None:
        self._settings = registry.get(Settings)
        self._bus = registry.get(EventBus)
        self._hasher = registry.get(PasswordHasher)
        # Two budgets (DESIGN.md §8): a tight one per identifier and account, and a looser one
        # per client address, so one account's failures never throttle the correct login of
        # another account behind the same address (an office, a NAT).
        # In queue mode the budgets live in the database, shared by every replica.
        def limiter(max_failures: int) -> Limiter:
            if self._settings.EXECUTION_MODE == "queue":
                return DatabaseLimiter(registry.get(async_sessionmaker), max_failures)
            return MemoryLimiter(max_failures)

        self._identifier_limiter = limiter(self._settings.LOGIN_FAILURES_PER_MINUTE)
        self._address_limiter = limiter(self._settings.LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE)

    # --- tokens ------------------------------------------------------------------------------
    async def issue_pair(
        self, session: AsyncSession, *, subject: int, role: Role, family: uuid.UUID | None = None,
    ) -> tuple[str, str, uuid.UUID]:
        secret = self._settings.JWT_SECRET
        access, _ = create_token(secret=secret, subject=subject, role=role, typ="access",
                                 lifetime=timedelta(minutes=self._settings.ACCESS_TOKEN_MINUTES))
        family = family or uuid.uuid4()
        jti = uuid.uuid4()
        refresh, claims = create_token(
            secret=secret, subject=subject, role=role, typ="refresh", jti=jti.hex,
            family=family.hex, lifetime=timedelta(days=self._settings.REFRESH_TOKEN_DAYS))
        session.add(RefreshToken(
            id=jti, family_id=family, token_hash=token_digest(refresh), created_at=utcnow(),
            expires_at=claims.expires_at, user_id=subject if role == "user" else None,
            admin_id=subject if role == "admin" else None))
        await session.flush()
        return access, refresh, jti

    async def refresh(self, session: AsyncSession, token: str) -> tuple[str, str]:
        """Spend `token` and return a new pair in its family. A token spent before revokes
        the whole family (someone holds a stolen copy) and answers 401."""
        try:
            claims = decode_token(token, secret=self._settings.JWT_SECRET, expected_typ="refresh")
            jti = uuid.UUID(hex=claims.jti)
        except (InvalidToken, ValueError) as exc:
            raise Unauthorized("invalid or expired refresh token", code="invalid_token") from exc
        row = await session.get(RefreshToken, jti)
        if row is None or row.token_hash != token_digest(token):
            raise Unauthorized("invalid or expired refresh token", code="invalid_token")
        # Spend it atomically: of two concurrent refreshes with one token, one wins.
        spent = await session.execute(
            update(RefreshToken).where(RefreshToken.id == jti, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            await session.execute(
                update(RefreshToken).where(RefreshToken.family_id == row.family_id,
                                           RefreshToken.revoked_at.is_(None))
                .values(revoked_at=utcnow()).execution_options(synchronize_session=False))
            # The revocation must survive the 401 that follows (the request transaction
            # rolls back on errors), so it commits here.
            await session.commit()
            logger.warning("refresh token reuse detected; family %s revoked", row.family_id)
            raise Unauthorized("refresh token already used; its session was revoked",
                               code="refresh_token_reused")
        subject = row.user_id if row.user_id is not None else row.admin_id
        if subject is None or not await self._subject_active(session, claims.role, subject):
            raise Unauthorized("account not found or inactive", code="invalid_token")
        access, refresh, new_jti = await self.issue_pair(
            session, subject=subject, role=claims.role, family=row.family_id)
        await session.execute(update(RefreshToken).where(RefreshToken.id == jti)
                              .values(replaced_by=new_jti)
                              .execution_options(synchronize_session=False))
        return access, refresh

    @staticmethod
    async def _subject_active(session: AsyncSession, role: str, subject: int) -> bool:
        if role == "admin":
            admin = await session.get(BackofficeUser, subject)
            return admin is not None and admin.is_active
        user = await session.get(User, subject)
        return user is not None and user.is_active and user.deleted_at is None

    # --- login -------------------------------------------------------------------------------
    async def _check_rate(self, identifier: str, client: str) -> _LoginKeys:
        # The identifier as login matches it (trimmed, any case): " Bob" is no fresh budget.
        keys = _LoginKeys(identifier=[f"id:{identifier.strip().lower()}"],
                          address=f"ip:{client}")
        await self._refuse_if_limited(keys)
        return keys

    async def _refuse_if_limited(self, keys: _LoginKeys) -> None:
        waits = [w for w in (await self._identifier_limiter.retry_after(*keys.identifier),
                             await self._address_limiter.retry_after(keys.address))
                 if w is not None]
        if waits:
            raise TooManyRequests("too many failed logins; try again later",
                                  code="too_many_attempts",
                                  headers={"Retry-After": str(max(waits))})

    async def _record_failure(self, keys: _LoginKeys) -> None:
        await self._identifier_limiter.record_failure(*keys.identifier)
        await self._address_limiter.record_failure(keys.address)

    async def login(self, session: AsyncSession, identifier: str, password: str,
                    client: str) -> tuple[User, str, str]:
        keys = await self._check_rate(identifier, client)
        ident = identifier.strip().lower()
        user = (await session.execute(select(User).where(
            or_(User.email == ident, func.lower(User.username) == ident),
            User.deleted_at.is_(None)))).scalar_one_or_none()
        # End the read before bcrypt, so no connection (nor SQLite's write lock) is held
        # through the hashing; the loaded user stays usable (expire_on_commit=False).
        await session.commit()
        if user is None:
            await self._hasher.burn(password)
            await self._record_failure(keys)
            raise Unauthorized(_BAD_CREDENTIALS, code="invalid_credentials")
        # One budget per account too, so its email and its username do not add up to two.
        keys.identifier.append(f"user:{user.id}")
        await self._refuse_if_limited(keys)
        if not await self._hasher.verify(password, user.password_hash) or not user.is_active:
            await self._record_failure(keys)
            await self._bus.emit_in(session, Event(
                EventTypes.AUTH_LOGIN_FAILED, {"user_id": user.id, "reason": "bad_credentials"},
                user_id=user.id))
            # The failure event must be kept although the request answers 401.
            await session.commit()
            await self._bus.dispatch_committed(session)
            raise Unauthorized(_BAD_CREDENTIALS, code="invalid_credentials")
        access, refresh, _ = await self.issue_pair(session, subject=user.id, role="user")
        await self._bus.emit_in(session, Event(
            EventTypes.AUTH_LOGIN_SUCCEEDED, {"user_id": user.id}, user_id=user.id))
        return user, access, refresh

    async def admin_login(self, session: AsyncSession, identifier: str, password: str,
                          client: str) -> tuple[BackofficeUser, str, str]:
        keys = await self._check_rate("admin:" + identifier.strip(), client)
        ident = identifier.strip().lower()
        admin = (await session.execute(select(BackofficeUser).where(
            or_(BackofficeUser.email == ident, func.lower(BackofficeUser.username) == ident))
        )).scalar_one_or_none()
        await session.commit()  # no transaction held through bcrypt (see login)
        if admin is None:
            await self._hasher.burn(password)
        if admin is None or not await self._hasher.verify(password, admin.password_hash) \
                or not admin.is_active:
            await self._record_failure(keys)
            raise Unauthorized(_BAD_CREDENTIALS, code="invalid_credentials")
        access, refresh, _ = await self.issue_pair(session, subject=admin.id, role="admin")
        return admin, access, refresh

    async def create_admin(self, session: AsyncSession, email: str, username: str,
                           password: str) -> BackofficeUser:
        email = email.lower()
        # Hashed before the first statement: no transaction is open through bcrypt.
        password_hash = await self._hasher.hash(password)
        taken = (await session.execute(select(BackofficeUser.id).where(
            or_(BackofficeUser.email == email,
                func.lower(BackofficeUser.username) == username.lower())))).first()
        if taken is not None:
            raise Conflict("an admin with that email or username exists", code="admin_taken")
        admin = BackofficeUser(email=email, username=username, password_hash=password_hash)
        session.add(admin)
        try:
            await session.flush()
        except IntegrityError as exc:  # a concurrent create took the name
            raise Conflict("an admin with that email or username exists",
                           code="admin_taken") from exc
        return admin


manager_class = AuthManager
