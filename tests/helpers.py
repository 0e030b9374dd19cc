"""Small helpers the tests share: accounts and tokens through the real API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"


@dataclass
class Account:
    id: int
    email: str
    username: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def sign_up_and_login(client: httpx.AsyncClient, name: str | None = None) -> Account:
    n = next(_counter)
    username = name or f"user{n}"
    email = f"{username}@example.com"
    r = await client.post("/api/v1/users", json={"email": email, "username": username,
                                                 "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/auth/login", json={"identifier": username,
                                                      "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    return Account(id=body["user"]["id"], email=email, username=username, password=PASSWORD,
                   access_token=body["access_token"], refresh_token=body["refresh_token"])


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The documented error shape, with the expected status (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, error
    return error
