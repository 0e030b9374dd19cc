"""Password hashing (bcrypt) and JWTs (python-jose, HS256 pinned, `typ` separates kinds)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import bcrypt
from jose import JWTError, jwt

ALGORITHM = "HS256"
BCRYPT_MAX_BYTES = 72

T = TypeVar("T")
TokenType = Literal["access", "refresh"]
Role = Literal["user", "admin"]


def password_too_long(password: str) -> bool:
    """bcrypt ignores bytes past 72; we refuse such passwords rather than truncate them."""
    return len(password.encode("utf-8")) > BCRYPT_MAX_BYTES


def hash_password(password: str, rounds: int = 12) -> str:
    if password_too_long(password):
        raise ValueError("password longer than 72 bytes")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    if password_too_long(password):
        return False
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except ValueError:
        return False


class PasswordHasher:
    """bcrypt off the event loop: about 0.25 s of CPU a check at 12 rounds, which on the loop
    would stall every tunnel and run of the process. bcrypt releases the GIL, so a small pool
    of threads hashes in parallel while the loop serves everything else. Callers hash outside
    any database transaction, so no pooled connection (nor SQLite's write lock) is held
    through the hashing."""

    def __init__(self, rounds: int, threads: int = 0) -> None:
        self.rounds = rounds
        self._pool = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 2,
                                        thread_name_prefix="bcrypt")
        # What an unknown identifier is checked against: made with the same rounds as real
        # hashes, so both answers cost the same (no timing oracle for account existence).
        self._dummy_hash = hash_password("not-a-real-password", rounds)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password, self.rounds)

    async def verify(self, password: str, password_hash: str) -> bool:
        return await self._run(verify_password, password, password_hash)

    async def burn(self, password: str) -> None:
        """Spend a real check's time for an identifier that matches no account."""
        await self._run(verify_password, password, self._dummy_hash)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class TokenClaims:
    subject: int
    role: Role
    typ: TokenType
    jti: str
    family: str | None
    expires_at: datetime


class InvalidToken(Exception):
    pass


def create_token(
    *, secret: str, subject: int, role: Role, typ: TokenType, lifetime: timedelta,
    jti: str | None = None, family: str | None = None,
) -> tuple[str, TokenClaims]:
    now = datetime.now(UTC)
    expires = now + lifetime
    claims = TokenClaims(subject=subject, role=role, typ=typ, jti=jti or uuid.uuid4().hex,
                         family=family, expires_at=expires)
    payload: dict[str, Any] = {
        "sub": str(subject), "role": role, "typ": typ, "jti": claims.jti,
        "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
    }
    if family is not None:
        payload["fam"] = family
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


# Verified claims by (token, secret, type): every authenticated request decodes its bearer
# token, and verifying it again costs ~60 µs. Only tokens that passed are kept, and the expiry
# is checked again on every use; the cache is cleared when it reaches its bound.
_VERIFIED: dict[tuple[str, str, str], TokenClaims] = {}
_VERIFIED_MAX = 10_000


def decode_token(token: str, *, secret: str, expected_typ: TokenType) -> TokenClaims:
    """Decode and check a token; anything off raises InvalidToken (never a partial result)."""
    key = (token, secret, expected_typ)
    claims = _VERIFIED.get(key)
    if claims is None:
        claims = _decode(token, secret=secret, expected_typ=expected_typ)
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = claims
    elif claims.expires_at <= datetime.now(UTC):
        _VERIFIED.pop(key, None)
        raise InvalidToken("Signature has expired.")
    return claims


def _decode(token: str, *, secret: str, expected_typ: TokenType) -> TokenClaims:
    try:
        header = jwt.get_unverified_header(token)
    except JWTError as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("unexpected algorithm")
    try:
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require_exp": True, "require_sub": True, "require_jti": True},
        )
    except JWTError as exc:
        raise InvalidToken(str(exc) or "invalid token") from exc
    if payload.get("typ") != expected_typ:
        raise InvalidToken("wrong token type")
    role = payload.get("role")
    if role not in ("user", "admin"):
        raise InvalidToken("unknown role")
    try:
        subject = int(payload["sub"])
        expires_at = datetime.fromtimestamp(int(payload["exp"]), UTC)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("bad claims") from exc
    return TokenClaims(subject=subject, role=role, typ=expected_typ, jti=str(payload["jti"]),
                       family=payload.get("fam"), expires_at=expires_at)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
