from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.auth import principal_from_token
from app.api.deps import SessionDep, SettingsDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.endpoints.auth import client_address
from app.api.v1.schemas.auth import AdminCreate, AdminLoginResponse, AdminOut, LoginRequest
from app.core.errors import Forbidden, Unauthorized
from app.core.security import constant_time_equals
from app.modules.auth.manager import AuthManager

router = api_router(prefix="/auth/backoffice", tags=["backoffice"])
_bearer = HTTPBearer(auto_error=False)


async def require_admin_or_bootstrap(
    session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_bootstrap_token: Annotated[str | None, Header()] = None,
) -> None:
    """An admin token, or the BOOTSTRAP_ADMIN_TOKEN header. A dependency, so it is checked
    before the body is (DESIGN.md §3: authentication comes before validation)."""
    bootstrap = settings.BOOTSTRAP_ADMIN_TOKEN
    if x_bootstrap_token is not None:
        if not bootstrap or not constant_time_equals(x_bootstrap_token, bootstrap):
            raise Unauthorized("invalid bootstrap token", code="invalid_bootstrap_token")
    elif credentials is None:
        raise Unauthorized("admin token or bootstrap token required", code="not_authenticated")
    else:
        principal = await principal_from_token(credentials.credentials, session, settings)
        if not principal.is_admin:
            raise Forbidden("admin only")


@router.post("/create", response_model=AdminOut, status_code=status.HTTP_201_CREATED,
             dependencies=[Depends(require_admin_or_bootstrap)], responses=errors(409))
async def create_admin(body: AdminCreate, session: SessionDep,
                       auth: AuthManager = manager(AuthManager)) -> AdminOut:
    """An admin creates another; the first comes from scripts/create_admin.py or the
    BOOTSTRAP_ADMIN_TOKEN header."""
    admin = await auth.create_admin(session, body.email, body.username, body.password)
    return AdminOut(id=admin.id, email=admin.email, username=admin.username)


@router.post("/login", response_model=AdminLoginResponse, responses=errors(401, 429))
async def admin_login(body: LoginRequest, request: Request, session: SessionDep,
                      auth: AuthManager = manager(AuthManager)) -> AdminLoginResponse:
    admin, access, refresh = await auth.admin_login(session, body.identifier, body.password,
                                                    client_address(request))
    return AdminLoginResponse(access_token=access, refresh_token=refresh,
                              admin=AdminOut(id=admin.id, email=admin.email,
                                             username=admin.username))
