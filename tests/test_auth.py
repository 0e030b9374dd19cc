"""Accounts and tokens (DESIGN.md §3, §8): sign-up, login, bcrypt's 72-byte limit, refresh
rotation with reuse detection, login rate limiting, a corpus of forged tokens, and the
backoffice admins."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from tests.helpers import PASSWORD, Account, assert_error, sign_up_and_login

BOOTSTRAP = "bootstrap-" + "b" * 40
ME = "/api/v1/users/me"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """This module's default settings; a test may pass its own with indirect parametrization."""
    return dict(getattr(request, "param", {"BOOTSTRAP_ADMIN_TOKEN": BOOTSTRAP}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_up(client: httpx.AsyncClient, email: str, username: str,
                  password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/users", json={"email": email, "username": username,
                                                    "password": password})


async def login(client: httpx.AsyncClient, identifier: str, password: str = PASSWORD,
                **kwargs: Any) -> httpx.Response:
    return await client.post("/api/v1/auth/login",
                             json={"identifier": identifier, "password": password}, **kwargs)


# --- sign-up and login ----------------------------------------------------------------------


async def test_duplicate_sign_up_is_409_case_insensitive(client: httpx.AsyncClient) -> None:
    assert (await sign_up(client, "bob@example.com", "bob")).status_code == 201
    for email, username, code in [
        ("bob@example.com", "someone", "email_taken"),
        ("BOB@EXAMPLE.COM", "someone", "email_taken"),
        ("other@example.com", "bob", "username_taken"),
        ("other@example.com", "BoB", "username_taken"),
    ]:
        assert_error(await sign_up(client, email, username), 409, code)
    # Nothing was created by the refused attempts.
    assert_error(await login(client, "someone"), 401, "invalid_credentials")
    assert_error(await login(client, "other@example.com"), 401, "invalid_credentials")


async def test_sign_up_validation(client: httpx.AsyncClient) -> None:
    for body in [
        {"email": "not-an-email", "username": "carol", "password": PASSWORD},
        {"email": "carol@example.com", "username": "ca", "password": PASSWORD},
        {"email": "carol@example.com", "username": "carol with spaces", "password": PASSWORD},
        {"email": "carol@example.com", "username": "carol", "password": "short"},
        {"email": "carol@example.com", "username": "carol"},
        {"email": "carol@example.com", "username": "carol", "password": PASSWORD,
         "admin": True},
    ]:
        r = await client.post("/api/v1/users", json=body)
        assert_error(r, 422, "validation_error")
    assert_error(await login(client, "carol"), 401, "invalid_credentials")


async def test_concurrent_duplicate_sign_ups_give_one_account_and_409s(
    client: httpx.AsyncClient,
) -> None:
    """The check-then-insert race: the database settles it, and the loser gets the 409
    (never a 500), also when the usernames differ only in case."""
    same_email = [{"email": "race@example.com", "username": f"racer{i}", "password": PASSWORD}
                  for i in range(4)]
    same_name = [{"email": f"case{i}@example.com", "username": name, "password": PASSWORD}
                 for i, name in enumerate(["Case", "case", "CASE", "cAsE"])]
    for bodies, code in ((same_email, "email_taken"), (same_name, "username_taken")):
        responses = await asyncio.gather(
            *(client.post("/api/v1/users", json=body) for body in bodies))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409, 409], [r.text for r in responses]
        for r in responses:
            if r.status_code == 409:
                assert_error(r, 409, code)
    # One account each, and login finds exactly it.
    assert (await login(client, "race@example.com")).status_code == 200
    r = await login(client, "CASE")
    assert r.status_code == 200, r.text


async def test_sign_up_then_login_by_email_and_by_username(client: httpx.AsyncClient) -> None:
    r = await sign_up(client, "Dave@Example.com", "Dave")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "dave@example.com"
    assert body["username"] == "Dave"
    assert body["is_active"] is True
    assert isinstance(body["id"], int)
    assert not {"password", "password_hash"} & set(body)
    assert PASSWORD not in r.text
    for identifier in ("dave@example.com", "DAVE@example.com", "Dave", "dave"):
        r = await login(client, identifier)
        assert r.status_code == 200, (identifier, r.text)
        body = r.json()
        assert body["token_type"] == "bearer"
        assert body["user"]["username"] == "Dave"
        me = await client.get(ME, headers=bearer(body["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["id"] == body["user"]["id"]


async def test_wrong_password_and_unknown_user_answer_identically(
    client: httpx.AsyncClient,
) -> None:
    assert (await sign_up(client, "erin@example.com", "erin")).status_code == 201
    same_id = {"X-Request-ID": "login-probe-1"}
    wrong = await login(client, "erin", "wrong-password-123", headers=same_id)
    unknown = await login(client, "nobody-here", "wrong-password-123", headers=same_id)
    unknown_email = await login(client, "nobody@example.com", "x", headers=same_id)
    error = assert_error(wrong, 401, "invalid_credentials")
    assert error["request_id"] == "login-probe-1"
    for other in (unknown, unknown_email):
        assert other.status_code == wrong.status_code
        assert other.content == wrong.content  # byte for byte (same request id sent)
        assert dict(other.headers) == dict(wrong.headers)
    # With distinct request ids, only the request id differs.
    a = (await login(client, "erin", "wrong-password-123")).json()
    b = (await login(client, "nobody-here", "wrong-password-123")).json()
    assert a["error"].pop("request_id") != b["error"].pop("request_id")
    assert a == b


# --- bcrypt's 72 bytes ------------------------------------------------------------------------

LONG_ASCII = "a" * 73
LONG_MULTIBYTE = "é" * 37  # 37 characters, 74 bytes
assert len(LONG_MULTIBYTE) < 72 < len(LONG_MULTIBYTE.encode())


async def test_password_over_72_bytes_is_422_on_sign_up_and_login(
    client: httpx.AsyncClient,
) -> None:
    account = await sign_up_and_login(client)
    for password in (LONG_ASCII, LONG_MULTIBYTE, "ü" * 60):
        error = assert_error(await sign_up(client, "frank@example.com", "frank", password),
                             422, "validation_error")
        assert "72" in json.dumps(error)
        # Nothing was stored.
        assert_error(await login(client, "frank"), 401, "invalid_credentials")
        # Login refuses the over-long password before looking at any account.
        assert_error(await login(client, "frank", password), 422, "validation_error")
        assert_error(await login(client, account.username, password), 422,
                     "validation_error")


async def test_a_72_byte_password_works_and_is_never_truncated(
    client: httpx.AsyncClient,
) -> None:
    cases = [
        ("p" * 72, "p" * 73),
        ("é" * 36, "é" * 36 + "x"),  # 72 bytes, then 73
        ("x" * 70 + "é", "x" * 70 + "é" + "é"),  # 72 bytes, then a multibyte character more
    ]
    for n, (password, extension) in enumerate(cases):
        assert len(password.encode()) == 72
        assert len(extension.encode()) > 72 and extension.startswith(password)
        name = f"gina{n}"
        assert (await sign_up(client, f"{name}@example.com", name, password)).status_code == 201
        assert (await login(client, name, password)).status_code == 200
        r = await login(client, name, extension)
        assert r.status_code != 200
        assert_error(r, 422, "validation_error")
        # A password that shares the first 71 bytes only is simply wrong.
        assert_error(await login(client, name, password.encode()[:71].decode("utf-8", "ignore")
                                 + "Z"), 401, "invalid_credentials")


# --- refresh rotation and reuse detection -----------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_rotates_and_the_old_token_is_spent(client: httpx.AsyncClient) -> None:
    account = await sign_up_and_login(client)
    r = await refresh(client, account.refresh_token)
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type"}
    assert pair["refresh_token"] != account.refresh_token
    assert pair["access_token"] != account.access_token
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    # The new refresh token rotates again.
    r2 = await refresh(client, pair["refresh_token"])
    assert r2.status_code == 200, r2.text
    assert r2.json()["refresh_token"] not in (pair["refresh_token"], account.refresh_token)


async def test_reusing_a_spent_refresh_token_revokes_the_family(
    client: httpx.AsyncClient,
) -> None:
    account = await sign_up_and_login(client)
    other = await sign_up_and_login(client)  # a different family, untouched by the reuse
    first = await refresh(client, account.refresh_token)
    assert first.status_code == 200
    newer = first.json()["refresh_token"]

    reused = await refresh(client, account.refresh_token)
    assert_error(reused, 401, "refresh_token_reused")
    # The newer token of the same family is revoked too (someone holds a stolen copy).
    assert_error(await refresh(client, newer), 401)
    # The family stays dead; a second login of the same account starts a new one.
    assert_error(await refresh(client, account.refresh_token), 401)
    fresh = (await login(client, account.username)).json()["refresh_token"]
    assert (await refresh(client, fresh)).status_code == 200
    assert (await refresh(client, other.refresh_token)).status_code == 200


async def test_refresh_refuses_garbage_and_forged_refresh_tokens(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    secret = app.state.settings.JWT_SECRET
    claims = jwt.get_unverified_claims(account.refresh_token)
    resigned_wrong_key = jwt.encode(claims, "another-secret-" + "y" * 32, algorithm="HS256")
    # Right key, same jti, but not the token that was issued (its hash differs).
    unissued = jwt.encode({**claims, "exp": claims["exp"] + 10}, secret, algorithm="HS256")
    for token in ("garbage", "a.b.c", resigned_wrong_key, unissued):
        assert_error(await refresh(client, token), 401)
    # An access token is no refresh token.
    assert_error(await refresh(client, account.access_token), 401, "invalid_token")
    # None of that harmed the real token.
    assert (await refresh(client, account.refresh_token)).status_code == 200
    assert_error(await client.post("/api/v1/auth/refresh", json={}), 422, "validation_error")


# --- login rate limiting ----------------------------------------------------------------------

LIMIT = 3


def from_address(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.mark.parametrize("settings_overrides", [{"LOGIN_FAILURES_PER_MINUTE": LIMIT}],
                         indirect=True, ids=["limit3"])
async def test_failures_per_identifier_count_across_addresses_and_spellings(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    spellings = [account.username, f" {account.username}", f"{account.username.upper()} "]
    assert len(spellings) == LIMIT
    # Each failure from a different address, with the identifier spelt differently: login
    # matches them all to one account, so they share one budget.
    for n, spelling in enumerate(spellings):
        async with from_address(app, f"10.0.0.{n + 1}") as c:
            assert_error(await login(c, spelling, "wrong-password"), 401)
    async with from_address(app, "10.0.0.99") as c:
        r = await login(c, f"  {account.username}  ", "wrong-password")
        assert_error(r, 429, "too_many_attempts")
        assert 1 <= int(r.headers["retry-after"]) <= 61
        # Throttled even with the right password, by username or any case of it.
        assert_error(await login(c, account.username), 429, "too_many_attempts")
        assert_error(await login(c, account.username.upper()), 429, "too_many_attempts")
        # Another account from that fresh address is not affected.
        other = await sign_up_and_login(c)
        assert (await login(c, other.username)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"LOGIN_FAILURES_PER_MINUTE": LIMIT}],
                         indirect=True, ids=["limit3"])
async def test_an_accounts_email_and_username_share_one_failure_budget(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    # Alternate the two identifiers of one account, each from a fresh address.
    for n in range(LIMIT):
        identifier = account.email if n % 2 else account.username
        async with from_address(app, f"10.1.0.{n + 1}") as c:
            assert_error(await login(c, identifier, "wrong-password"), 401)
    async with from_address(app, "10.1.0.99") as c:
        assert_error(await login(c, account.email), 429, "too_many_attempts")
        assert_error(await login(c, account.username), 429, "too_many_attempts")


ADDRESS_LIMIT = 7


@pytest.mark.parametrize("settings_overrides", [{
    "LOGIN_FAILURES_PER_MINUTE": LIMIT, "LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE": ADDRESS_LIMIT}],
    indirect=True, ids=["limit3-address7"])
async def test_failed_logins_per_address_are_throttled(client: httpx.AsyncClient,
                                                       app: FastAPI) -> None:
    account = await sign_up_and_login(client)
    # Spraying different (unknown) identifiers from one address: each identifier stays under
    # its own budget, but the address passes the looser per-address one.
    for i in range(ADDRESS_LIMIT):
        assert_error(await login(client, f"ghost{i}", "wrong-password"), 401)
    r = await login(client, "ghost-next", "wrong-password")
    assert_error(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) >= 1
    # That address is throttled for everyone now, correct passwords included ...
    assert_error(await login(client, account.username), 429, "too_many_attempts")
    # ... and no other address is.
    async with from_address(app, "10.2.0.1") as c:
        assert (await login(c, account.username)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{
    "LOGIN_FAILURES_PER_MINUTE": LIMIT, "LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE": ADDRESS_LIMIT}],
    indirect=True, ids=["limit3-address7"])
async def test_one_accounts_limit_never_throttles_another_account_on_the_same_address(
    client: httpx.AsyncClient,
) -> None:
    victim, colleague = await sign_up_and_login(client), await sign_up_and_login(client)
    for _ in range(LIMIT):
        assert_error(await login(client, victim.username, "wrong-password"), 401)
    # The victim's identifier is locked, even with the right password ...
    assert_error(await login(client, victim.username), 429, "too_many_attempts")
    # ... but a colleague behind the same address logs in, by username and by email.
    assert (await login(client, colleague.username)).status_code == 200
    assert (await login(client, colleague.email)).status_code == 200
    # The address budget counted the victim's failures; it is not used up by them.
    for i in range(ADDRESS_LIMIT - LIMIT):
        assert_error(await login(client, f"nobody{i}", "wrong-password"), 401)
    assert_error(await login(client, "nobody-more", "wrong-password"), 429, "too_many_attempts")


@pytest.mark.parametrize("settings_overrides", [{"LOGIN_FAILURES_PER_MINUTE": LIMIT}],
                         indirect=True, ids=["limit3"])
async def test_successful_logins_of_many_accounts_are_never_throttled(
    client: httpx.AsyncClient,
) -> None:
    accounts = [await sign_up_and_login(client) for _ in range(LIMIT * 3)]
    for _ in range(2):
        for account in accounts:
            r = await login(client, account.email)
            assert r.status_code == 200, r.text
    # One failure under the limit does not lock anyone out either.
    assert_error(await login(client, accounts[0].username, "wrong-password"), 401)
    assert (await login(client, accounts[1].username)).status_code == 200


# --- the forged-token corpus ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()),
                     _b64(signature)])


def _with_header(token: str, secret: str, header: dict[str, Any]) -> str:
    """Same payload, a different header, re-signed with HMAC-SHA256 and the right key (an
    algorithm-confusion attempt)."""
    import hashlib
    import hmac

    _, payload_part, _ = token.split(".")
    header_part = _b64(json.dumps(header).encode())
    signing_input = f"{header_part}.{payload_part}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{_b64(signature)}"


def forged_tokens(account: Account, victim: Account, secret: str) -> dict[str, str]:
    claims = jwt.get_unverified_claims(account.access_token)
    now = int(time.time())
    header_part, payload_part, signature_part = account.access_token.split(".")
    tampered_payload = _b64(json.dumps({**claims, "sub": str(victim.id)}).encode())

    def signed(payload: dict[str, Any], algorithm: str = "HS256", key: str = secret) -> str:
        return jwt.encode(payload, key, algorithm=algorithm)

    def without(key: str) -> dict[str, Any]:
        return {k: v for k, v in claims.items() if k != key}

    return {
        "alg-none": _compact({"alg": "none", "typ": "JWT"}, claims),
        "alg-none-uppercase": _compact({"alg": "NONE", "typ": "JWT"}, claims),
        "alg-none-with-signature": _compact({"alg": "none"}, claims, b"sig"),
        "hs256-wrong-key": signed(claims, key="wrong-secret-" + "z" * 32),
        "hs256-empty-key": signed(claims, key=""),
        "tampered-sub": f"{header_part}.{tampered_payload}.{signature_part}",
        "tampered-role-admin": ".".join([
            header_part, _b64(json.dumps({**claims, "role": "admin"}).encode()),
            signature_part]),
        "signature-stripped": f"{header_part}.{payload_part}.",
        "expired": signed({**claims, "iat": now - 7200, "exp": now - 3600}),
        "no-exp": signed(without("exp")),
        "no-typ": signed(without("typ")),
        "no-sub": signed(without("sub")),
        "no-jti": signed(without("jti")),
        "non-integer-sub": signed({**claims, "sub": "alice"}),
        "unknown-role": signed({**claims, "role": "superuser"}),
        "unknown-typ": signed({**claims, "typ": "id"}),
        "refresh-as-access": account.refresh_token,
        "rs256-header": _with_header(account.access_token, secret, {"alg": "RS256",
                                                                    "typ": "JWT"}),
        "hs512-right-key": signed(claims, algorithm="HS512"),
        "hs384-right-key": signed(claims, algorithm="HS384"),
        "deleted-user-sub": signed({**claims, "sub": "999999"}),
        "garbage": "garbage",
        "three-garbage-parts": "abc.def.ghi",
        "json-not-jwt": _b64(b'{"sub":"1"}'),
        "not-base64": "%%%.%%%.%%%",
    }


async def test_forged_tokens_are_all_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    account = await sign_up_and_login(client)
    victim = await sign_up_and_login(client)
    secret = app.state.settings.JWT_SECRET
    corpus = forged_tokens(account, victim, secret)
    assert (await client.get(ME, headers=account.headers)).status_code == 200
    for name, token in corpus.items():
        r = await client.get(ME, headers=bearer(token))
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert_error(r, 401)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), name
    # Headers that carry no usable bearer token at all.
    for name, headers in {
        "no-header": {},
        "empty-bearer": {"Authorization": "Bearer "},
        "bearer-only": {"Authorization": "Bearer"},
        "basic-scheme": {"Authorization": "Basic " + _b64(b"alice:password")},
        "token-without-scheme": {"Authorization": account.access_token},
    }.items():
        r = await client.get(ME, headers=headers)
        assert r.status_code == 401, (name, r.text)
        assert_error(r, 401)


# --- backoffice admins ------------------------------------------------------------------------

CREATE = "/api/v1/auth/backoffice/create"
ADMIN_LOGIN = "/api/v1/auth/backoffice/login"


def admin_body(n: int = 1) -> dict[str, str]:
    return {"email": f"admin{n}@example.com", "username": f"admin{n}",
            "password": "admin-password-" + str(n)}


async def admin_login(client: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await client.post(ADMIN_LOGIN, json={"identifier": body["username"],
                                                "password": body["password"]})


async def test_backoffice_create_needs_an_admin_or_the_bootstrap_token(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up_and_login(client)
    assert_error(await client.post(CREATE, json=admin_body()), 401)
    assert_error(await client.post(CREATE, json=admin_body(), headers=user.headers), 403,
                 "forbidden")
    assert_error(await client.post(CREATE, json=admin_body(),
                                   headers={"X-Bootstrap-Token": "wrong"}), 401)
    assert_error(await client.post(CREATE, json=admin_body(),
                                   headers={"X-Bootstrap-Token": ""}), 401)
    # A forged admin token is no admin.
    assert_error(await client.post(CREATE, json=admin_body(),
                                   headers=bearer("garbage.token.here")), 401)
    # None of the refused attempts created an admin.
    assert_error(await admin_login(client, admin_body()), 401, "invalid_credentials")

    r = await client.post(CREATE, json=admin_body(), headers={"X-Bootstrap-Token": BOOTSTRAP})
    assert r.status_code == 201, r.text
    assert r.json()["username"] == "admin1"
    assert "password" not in r.text
    # The same admin twice is a conflict.
    again = await client.post(CREATE, json={**admin_body(), "email": "ADMIN1@example.com"},
                              headers={"X-Bootstrap-Token": BOOTSTRAP})
    assert_error(again, 409)
    # The 72-byte rule holds for admins too.
    assert_error(await client.post(CREATE, json={**admin_body(9), "password": "a" * 73},
                                   headers={"X-Bootstrap-Token": BOOTSTRAP}), 422)


@pytest.mark.parametrize("settings_overrides", [{}], indirect=True, ids=["no-bootstrap"])
async def test_without_bootstrap_setting_the_header_is_refused(
    client: httpx.AsyncClient,
) -> None:
    for value in ("", "anything", BOOTSTRAP):
        assert_error(await client.post(CREATE, json=admin_body(),
                                       headers={"X-Bootstrap-Token": value}), 401)
    assert_error(await admin_login(client, admin_body()), 401)


async def test_admin_powers(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = admin_body(1)
    r = await client.post(CREATE, json=first, headers={"X-Bootstrap-Token": BOOTSTRAP})
    assert r.status_code == 201, r.text

    r = await admin_login(client, first)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["admin"]["username"] == "admin1"
    claims = jwt.decode(body["access_token"], app.state.settings.JWT_SECRET,
                        algorithms=["HS256"])
    assert claims["role"] == "admin"
    assert claims["typ"] == "access"
    admin = bearer(body["access_token"])
    # Admin login by email works too, and a wrong password is refused like a user's.
    by_email = await client.post(ADMIN_LOGIN, json={"identifier": first["email"],
                                                    "password": first["password"]})
    assert by_email.status_code == 200
    assert_error(await client.post(ADMIN_LOGIN, json={"identifier": "admin1",
                                                      "password": "wrong-password"}), 401,
                 "invalid_credentials")
    # User credentials do not open the backoffice, nor admin credentials the user login.
    user = await sign_up_and_login(client)
    assert_error(await client.post(ADMIN_LOGIN, json={"identifier": user.username,
                                                      "password": user.password}), 401)
    assert_error(await login(client, first["username"], first["password"]), 401)

    # An admin creates another admin, who can log in.
    second = admin_body(2)
    r = await client.post(CREATE, json=second, headers=admin)
    assert r.status_code == 201, r.text
    assert (await admin_login(client, second)).status_code == 200

    # An admin sees any user and any user's projects.
    other = await sign_up_and_login(client)
    r = await client.post("/api/v1/projects", json={"name": "Other's"}, headers=other.headers)
    assert r.status_code == 201
    project_id = r.json()["id"]
    r = await client.get(f"/api/v1/users/{other.id}", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == other.username
    r = await client.post("/api/v1/projects/select", json={"user_id": other.id}, headers=admin)
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()] == [project_id]
    r = await client.post("/api/v1/projects/select", json={"user_id": user.id}, headers=admin)
    assert r.status_code == 200 and r.json() == []
    assert_error(await client.get("/api/v1/users/999999", headers=admin), 404)

    # A normal user sees their own projects, never someone else's.
    r = await client.post("/api/v1/projects/select", json={"user_id": user.id},
                          headers=user.headers)
    assert r.status_code == 200 and r.json() == []
    r = await client.post("/api/v1/projects/select", json={"user_id": other.id},
                          headers=user.headers)
    assert_error(r, 404, "not_found")
    assert_error(await client.get(f"/api/v1/users/{other.id}", headers=user.headers), 404)

    # An admin may delete any user; the user's token stops working.
    r = await client.delete(f"/api/v1/users/{other.id}", headers=admin)
    assert r.status_code == 204, r.text
    assert_error(await client.get(ME, headers=other.headers), 401)
    assert_error(await client.get(f"/api/v1/users/{other.id}", headers=admin), 404)
    r = await client.post("/api/v1/projects/select", json={"user_id": other.id}, headers=admin)
    assert r.status_code == 200 and r.json() == []

    # The admin's refresh token rotates like a user's and keeps the admin role.
    r = await refresh(client, body["refresh_token"])
    assert r.status_code == 200, r.text
    assert jwt.get_unverified_claims(r.json()["access_token"])["role"] == "admin"
    # An admin token is not a user session.
    assert_error(await client.get(ME, headers=admin), 403)


async def test_starting_a_run_checks_the_caller_like_every_user_endpoint(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    """POST /execution/run proves its caller with a lighter query than the other user
    endpoints (no ORM load); the answers must be the same: 401 without or with a bad token,
    403 for an admin token, 401 once the account is deactivated or deleted."""
    from sqlalchemy import update

    from app.models import User

    run = "/api/v1/execution/run"
    body = {"nodes": [{"id": "p", "type": "initialPrompt", "data": {"prompt": "x"}},
                      {"id": "o", "type": "textOutput", "data": {}}],
            "edges": [{"source": "p", "target": "o"}]}
    user = await sign_up_and_login(client)
    r = await client.post(run, json=body, headers=user.headers)
    assert r.status_code == 202, r.text
    assert_error(await client.post(run, json=body), 401, "not_authenticated")
    assert_error(await client.post(run, json=body, headers=bearer("garbage.token.here")), 401,
                 "invalid_token")
    # A refresh token is not an access token.
    r = await login(client, user.username, user.password)
    assert_error(await client.post(run, json=body,
                                   headers=bearer(r.json()["refresh_token"])), 401)

    assert (await client.post(CREATE, json=admin_body(),
                              headers={"X-Bootstrap-Token": BOOTSTRAP})).status_code == 201
    admin = bearer((await admin_login(client, admin_body())).json()["access_token"])
    assert_error(await client.post(run, json=body, headers=admin), 403, "forbidden")

    inactive = await sign_up_and_login(client)
    async with app.state.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == inactive.id)
                              .values(is_active=False))
    assert_error(await client.post(run, json=body, headers=inactive.headers), 401,
                 "invalid_token")

    deleted = await sign_up_and_login(client)
    assert (await client.delete(f"/api/v1/users/{deleted.id}", headers=admin)).status_code == 204
    assert_error(await client.post(run, json=body, headers=deleted.headers), 401,
                 "invalid_token")
