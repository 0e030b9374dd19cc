from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.security import BCRYPT_MAX_BYTES, password_too_long


def _check_password(value: str) -> str:
    if password_too_long(value):
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes (UTF-8)")
    return value


Password = Annotated[str, Field(min_length=8, max_length=200), AfterValidator(_check_password)]
# Login accepts any length up to the same cap, so an over-long password is a 422 there too.
LoginPassword = Annotated[str, Field(min_length=1, max_length=200),
                          AfterValidator(_check_password)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
