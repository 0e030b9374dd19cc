from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field

from app.api.v1.schemas.common import LoginPassword, Password, Strict
from app.api.v1.schemas.users import UserOut


class LoginRequest(Strict):
    identifier: str = Field(min_length=1, max_length=320)
    password: LoginPassword


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"


class LoginResponse(TokenPair):
    user: UserOut


class AdminCreate(Strict):
    email: EmailStr
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    password: Password


class AdminOut(BaseModel):
    id: int
    email: str
    username: str


class AdminLoginResponse(TokenPair):
    admin: AdminOut
