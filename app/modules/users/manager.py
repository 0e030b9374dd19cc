"""Sign-up, lookup and deletion of user accounts."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.v1.schemas.users import UserCreate
from app.core.bus import EventBus
from app.core.db.base import utcnow
from app.core.di import Registry
from app.core.errors import Conflict, NotFound
from app.core.events import Event, EventTypes
from app.core.security import PasswordHasher
from app.models import ConsistentCharacter, Flow, Project, RefreshToken, User


class UserManager:
    def __init__(self, registry: Registry) -> None:
        self._bus = registry.get(EventBus)
        self._hasher = registry.get(PasswordHasher)

    async def sign_up(self, session: AsyncSession, data: UserCreate) -> User:
        email = data.email.lower()
        # Hashed before the first statement, so no transaction (and, on SQLite, no write
        # lock) is held through ~0.25 s of bcrypt; a taken name costs the hash too.
        password_hash = await self._hasher.hash(data.password)
        taken = (await session.execute(
            select(User.email, User.username).where(
                or_(func.lower(User.email) == email,
                    func.lower(User.username) == data.username.lower()))
        )).first()
        if taken is not None:
            field = "email" if taken.email.lower() == email else "username"
            raise Conflict(f"that {field} is already registered", code=f"{field}_taken")
        user = User(email=email, username=data.username, password_hash=password_hash)
        session.add(user)
        try:
            await session.flush()
        except IntegrityError as exc:
            # A concurrent sign-up took the name between the check above and this insert.
            field = "email" if "email" in str(exc.orig).lower() else "username"
            raise Conflict(f"that {field} is already registered",
                           code=f"{field}_taken") from exc
        await self._bus.emit_in(session, Event(
            EventTypes.USER_CREATED, {"user_id": user.id, "username": user.username},
            user_id=user.id))
        return user

    async def get_visible(self, session: AsyncSession, user_id: int, *, viewer_id: int | None,
                          is_admin: bool) -> User:
        """A user as the viewer may see it: self, or anyone for an admin; else 404."""
        if not is_admin and user_id != viewer_id:
            raise NotFound("user not found")
        user = await session.get(User, user_id)
        if user is None or user.deleted_at is not None:
            raise NotFound("user not found")
        return user

    async def delete(self, session: AsyncSession, user: User) -> None:
        """Soft delete: the account and everything it owns go, its event log stays for
        auditing (the row keeps the log's foreign key valid; its email and username are
        freed)."""
        await session.execute(delete(Flow).where(Flow.user_id == user.id))
        await session.execute(delete(ConsistentCharacter).where(
            ConsistentCharacter.user_id == user.id))
        await session.execute(delete(Project).where(Project.user_id == user.id))
        await session.execute(update(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
        ).values(revoked_at=utcnow()))
        user.deleted_at = utcnow()
        user.is_active = False
        user.email = f"deleted-{user.id}@deleted.invalid"
        user.username = f"deleted-{user.id}"
        await session.flush()
        await self._bus.emit_in(session, Event(
            EventTypes.USER_DELETED, {"user_id": user.id}, user_id=user.id))


manager_class = UserManager
