from __future__ import annotations

from fastapi import Request

from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.auth import LoginRequest, LoginResponse, RefreshRequest, TokenPair
from app.api.v1.schemas.users import UserOut
from app.modules.auth.manager import AuthManager

router = api_router(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/login", response_model=LoginResponse, responses=errors(401, 429))
async def login(body: LoginRequest, request: Request, session: SessionDep,
                auth: AuthManager = manager(AuthManager)) -> LoginResponse:
    user, access, refresh = await auth.login(session, body.identifier, body.password,
                                             client_address(request))
    return LoginResponse(access_token=access, refresh_token=refresh,
                         user=UserOut.model_validate(user))


@router.post("/refresh", response_model=TokenPair, responses=errors(401))
async def refresh(body: RefreshRequest, session: SessionDep,
                  auth: AuthManager = manager(AuthManager)) -> TokenPair:
    access, refresh_token = await auth.refresh(session, body.refresh_token)
    return TokenPair(access_token=access, refresh_token=refresh_token)
