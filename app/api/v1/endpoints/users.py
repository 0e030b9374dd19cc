from __future__ import annotations

from typing import Annotated

from fastapi import Path, Response, status

from app.api.auth import CurrentUser, PrincipalDep
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.common import INT_ID_MAX
from app.api.v1.schemas.users import UserCreate, UserOut
from app.models import User
from app.modules.users.manager import UserManager

router = api_router(prefix="/users", tags=["users"])
UserId = Annotated[int, Path(ge=1, le=INT_ID_MAX)]
# `{user_id:int}` in the paths: only digits reach those routes, so DELETE /users/me is a 405
# (GET is the one method /users/me has), not a 422 about an integer.


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED,
             responses=errors(409))
async def sign_up(body: UserCreate, session: SessionDep,
                  users: UserManager = manager(UserManager)) -> User:
    return await users.sign_up(session, body)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> User:
    return user


@router.get("/{user_id:int}", response_model=UserOut, responses=errors(404))
async def get_user(user_id: UserId, principal: PrincipalDep, session: SessionDep,
                   users: UserManager = manager(UserManager)) -> User:
    viewer = principal.user.id if principal.user else None
    return await users.get_visible(session, user_id, viewer_id=viewer,
                                   is_admin=principal.is_admin)


@router.delete("/{user_id:int}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(404))
async def delete_user(user_id: UserId, principal: PrincipalDep, session: SessionDep,
                      users: UserManager = manager(UserManager)) -> Response:
    viewer = principal.user.id if principal.user else None
    user = await users.get_visible(session, user_id, viewer_id=viewer,
                                   is_admin=principal.is_admin)
    await users.delete(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
