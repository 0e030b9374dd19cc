"""get_current_user / get_current_admin dependencies.

They are FastAPI dependencies built on app.api.deps (the request's session and settings),
so they live in the API layer; until issue 11 this file was app/core/auth.py, which made
core import the API (pyproject.toml [tool.importlinter])."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import SessionDep, SettingsDep
from app.core.config import Settings
from app.core.errors import Forbidden, Unauthorized
from app.core.security import InvalidToken, TokenClaims, decode_token
from app.models.user import BackofficeUser, User

_bearer = HTTPBearer(auto_error=False)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user or a backoffice admin."""

    claims: TokenClaims
    user: User | None = None
    admin: BackofficeUser | None = None

    @property
    def is_admin(self) -> bool:
        return self.admin is not None


def _access_claims(token: str, settings: Settings) -> TokenClaims:
    try:
        return decode_token(token, secret=settings.JWT_SECRET, expected_typ="access")
    except InvalidToken as exc:
        raise Unauthorized("invalid or expired access token", code="invalid_token",
                           headers=_CHALLENGE) from exc


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token", code="not_authenticated", headers=_CHALLENGE)
    return credentials.credentials


def _account_gone() -> Unauthorized:
    return Unauthorized("account not found or inactive", code="invalid_token",
                        headers=_CHALLENGE)


async def principal_from_token(
    token: str, session: AsyncSession, settings: Settings
) -> Principal:
    claims = _access_claims(token, settings)
    if claims.role == "admin":
        admin = await session.get(BackofficeUser, claims.subject)
        if admin is None or not admin.is_active:
            raise _account_gone()
        return Principal(claims=claims, admin=admin)
    user = await session.get(User, claims.subject)
    if user is None or not user.is_active or user.deleted_at is not None:
        raise _account_gone()
    return Principal(claims=claims, user=user)


async def get_principal(
    request: Request, session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await principal_from_token(_bearer_token(credentials), session, settings)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    if principal.user is None:
        raise Forbidden("this endpoint needs a user account, not an admin token")
    return principal.user


async def get_current_admin(principal: PrincipalDep) -> BackofficeUser:
    if principal.admin is None:
        raise Forbidden("admin only")
    return principal.admin


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentAdmin = Annotated[BackofficeUser, Depends(get_current_admin)]


# --- the caller's id, for the hottest endpoint ------------------------------------------------
@dataclass(frozen=True, slots=True)
class UserRef:
    """A user account proven active in this request's transaction, without loading the ORM
    object (for endpoints that need only the id: starting a run)."""

    id: int


_USERS = cast(Table, User.__table__)
_ACTIVE_USER = select(_USERS.c.id).where(_USERS.c.id == bindparam("id"),
                                         _USERS.c.is_active.is_(True),
                                         _USERS.c.deleted_at.is_(None))


async def get_current_user_ref(
    session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserRef:
    """get_current_user's checks and answers (401 / 403 alike), with one Core query instead
    of an ORM load: on the run-start request the ORM's identity load was a tenth of the
    server's CPU."""
    token = _bearer_token(credentials)
    claims = _access_claims(token, settings)
    if claims.role == "admin":
        # Answered as get_current_user answers an admin token, which always raises: 401 for
        # a dead admin account, else 403.
        await get_current_user(await principal_from_token(token, session, settings))
    found = (await session.execute(_ACTIVE_USER, {"id": claims.subject})).first()
    if found is None:
        raise _account_gone()
    return UserRef(id=claims.subject)


CurrentUserRef = Annotated[UserRef, Depends(get_current_user_ref)]
