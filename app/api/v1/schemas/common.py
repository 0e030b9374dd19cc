from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from app.core.config import PROVIDER_IDS
from app.core.security import BCRYPT_MAX_BYTES, password_too_long

# A provider id the server knows (DESIGN.md §7); others are refused with 422.
ProviderIdStr = Annotated[str, WithJsonSchema({"type": "string", "enum": list(PROVIDER_IDS)})]

# An instant in a query (since/until): ISO 8601 with seconds, an optional fraction and an
# optional offset (none means UTC, DESIGN.md §3). The pattern spells out the calendar (month
# lengths, leap years), so the document and the server refuse exactly the same strings.
_YEAR = r"(?:[1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])"
_MONTH_DAY = (r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
              r"|(?:0[13578]|1[02])-31)")
_LEAP_DAY = r"(?:\d{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
_OFFSET = r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?"
INSTANT_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})T{_TIME}{_OFFSET}$"
_INSTANT = re.compile(INSTANT_PATTERN)


def _check_instant(value: Any) -> Any:
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError("expected an ISO 8601 instant like 2026-01-31T12:00:00Z "
                         "(without an offset: UTC)")
    return value


Instant = Annotated[datetime, BeforeValidator(_check_instant), WithJsonSchema({
    "type": "string", "pattern": INSTANT_PATTERN,
    "description": "ISO 8601, e.g. 2026-01-31T12:00:00.5+02:00; without an offset, UTC"})]

# Integer primary keys are 32-bit on PostgreSQL. An id outside that range belongs to nothing,
# and sending it to the database fails the query (a 500), so it is refused as invalid input.
INT_ID_MAX = 2**31 - 1
def _json_integer(value: Any) -> Any:
    """A JSON integer: `7` or `7.0` (JSON Schema's integer), never `true` or `"7"`, which
    pydantic's lax mode would read as 1 and 7."""
    if isinstance(value, bool | str):
        raise ValueError("expected an integer")
    return value


IntId = Annotated[int, Field(ge=1, le=INT_ID_MAX), BeforeValidator(_json_integer)]

# Passwords. bcrypt reads 72 bytes of UTF-8, so longer passwords are refused, never
# truncated (DESIGN.md §8); the server checks exactly that: at most 72 bytes.
# JSON Schema counts characters, not bytes, so the document states a character rule that is
# never looser than the check, by the widest character a password holds:
#   only ASCII: up to 72 characters; all below U+0800 (Latin, Greek, Cyrillic, Arabic…): 36;
#   all in the BMP (CJK…): 24; anything else (emoji…): 18.
# Every string the document allows is at most 72 bytes and accepted; a few it refuses (71
# ASCII characters and an "é") are still accepted — `within_tiers` names them for the fuzz test.
PASSWORD_TIERS = ((r"\x00-\x7F", 72), (r"\x00-\u07FF", 36),
                  (r"\x00-\uD7FF\uE000-\uFFFF", 24), (r"\s\S", 18))
PASSWORD_MIN = 8


def _tier_patterns(minimum: int) -> list[str]:
    return [f"^[{chars}]{{{minimum},{most}}}$" for chars, most in PASSWORD_TIERS]


_TIERS = [re.compile(p) for p in _tier_patterns(0)]


def within_tiers(value: str) -> bool:
    """Whether the document's character rule allows this password (lengths aside)."""
    return any(p.fullmatch(value) for p in _TIERS)


def _check_password(value: str) -> str:
    try:
        too_long = password_too_long(value)
    except UnicodeEncodeError as exc:  # a lone surrogate, from a JSON escape
        raise ValueError("password is not valid Unicode") from exc
    if too_long:
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes (UTF-8)")
    return value


def _password_schema(minimum: int) -> dict[str, Any]:
    return {"type": "string", "format": "password", "minLength": minimum, "maxLength": 72,
            "anyOf": [{"pattern": p} for p in _tier_patterns(minimum)],
            "description": f"{minimum} characters or more, at most 72 bytes of UTF-8 (bcrypt "
                           "reads no more): always fits in 72 ASCII characters, 36 below "
                           "U+0800, 24 in the BMP, 18 otherwise"}


Password = Annotated[str, Field(min_length=PASSWORD_MIN), AfterValidator(_check_password),
                     WithJsonSchema(_password_schema(PASSWORD_MIN))]
# Login takes any password up to the same 72 bytes, so an over-long one is a 422 there too.
LoginPassword = Annotated[str, Field(min_length=1), AfterValidator(_check_password),
                          WithJsonSchema(_password_schema(1))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


# --- update bodies: a field may be left out, but not set to null ------------------------------
def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


def _without_null(schema: dict[str, Any]) -> None:
    """The field's schema without its `null` option (and its `default: null`)."""
    options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    schema.pop("default", None)


NotNull = BeforeValidator(_refuse_null)


def optional_not_null(**constraints: Any) -> Any:
    """`name: Annotated[str | None, NotNull] = optional_not_null(max_length=200)`: absent means
    unchanged (`exclude_unset`), null is refused with 422, as the schema says."""
    return Field(default=None, json_schema_extra=_without_null, **constraints)
