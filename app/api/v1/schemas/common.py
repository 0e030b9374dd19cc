from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.security import BCRYPT_MAX_BYTES, password_too_long


def _check_password(value: str) -> str:
    if password_too_long(value):
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes (UTF-8)")
    return value


# Integer primary keys are 32-bit on PostgreSQL. An id outside that range belongs to nothing,
# and sending it to the database fails the query (a 500), so it is refused as invalid input.
INT_ID_MAX = 2**31 - 1
IntId = Annotated[int, Field(ge=1, le=INT_ID_MAX)]

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
