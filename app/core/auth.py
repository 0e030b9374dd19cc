"""get_current_user / get_current_admin dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
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


async def principal_from_token(
    token: str, session: AsyncSession, settings: Settings
) -> Principal:
    try:
        claims = decode_token(token, secret=settings.JWT_SECRET, expected_typ="access")
    except InvalidToken as exc:
        raise Unauthorized("invalid or expired access token", code="invalid_token",
                           headers=_CHALLENGE) from exc
    if claims.role == "admin":
        admin = await session.get(BackofficeUser, claims.subject)
        if admin is None or not admin.is_active:
            raise Unauthorized("account not found or inactive", code="invalid_token",
                               headers=_CHALLENGE)
        return Principal(claims=claims, admin=admin)
    user = await session.get(User, claims.subject)
    if user is None or not user.is_active or user.deleted_at is not None:
        raise Unauthorized("account not found or inactive", code="invalid_token",
                           headers=_CHALLENGE)
    return Principal(claims=claims, user=user)


async def get_principal(
    request: Request, session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token", code="not_authenticated", headers=_CHALLENGE)
    return await principal_from_token(credentials.credentials, session, settings)


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
