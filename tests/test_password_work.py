"""Password work (DESIGN.md §8, issue 11 items 12–13): bcrypt runs in threads beside the event
loop and outside any transaction; an unknown identifier costs what a real check costs; a burst
of sign-ups and logins on the embedded default all succeed; a request that finds no free
database connection answers 503 `busy` with Retry-After, never a 500."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from fastapi import FastAPI

from app.core.security import PasswordHasher
from tests.conftest import LiveServer
from tests.helpers import PASSWORD, assert_error, sign_up_and_login


async def test_hashing_leaves_the_event_loop_free() -> None:
    """While a costly hash runs, the loop keeps turning (counted, not timed): on the loop,
    bcrypt would hold it for the whole hash and the ticker would not move."""
    hasher = PasswordHasher(rounds=11, threads=1)
    try:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        hashed = await hasher.hash("pw")
        done.set()
        await task
        assert ticks > 100, ticks
        assert await hasher.verify("pw", hashed)
        assert not await hasher.verify("other", hashed)
    finally:
        hasher.close()


def test_the_dummy_hash_costs_what_a_real_one_costs() -> None:
    hasher = PasswordHasher(rounds=9)
    try:
        # bcrypt's cost factor is written into the hash: "$2b$09$…".
        assert hasher._dummy_hash.split("$")[2] == "09"
    finally:
        hasher.close()


ROUNDS = 10  # ~60 ms a check here: bcrypt, not the database, decides the answer time


@pytest.mark.parametrize("settings_overrides", [{"BCRYPT_ROUNDS": ROUNDS}], ids=["rounds10"])
async def test_unknown_and_known_identifiers_answer_in_the_same_time(
    client: httpx.AsyncClient,
) -> None:
    """No timing oracle: the median answer time of an unknown identifier and of a real one
    with a wrong password, measured interleaved in one run, are within a factor of two."""
    account = await sign_up_and_login(client)

    async def timed(identifier: str) -> float:
        started = time.perf_counter()
        r = await client.post("/api/v1/auth/login",
                              json={"identifier": identifier, "password": "wrong-password"})
        elapsed = time.perf_counter() - started
        assert_error(r, 401, "invalid_credentials")
        return elapsed

    unknown, known = [], []
    for i in range(7):  # under the per-identifier failure budget (10)
        unknown.append(await timed(f"nobody-{i}"))
        known.append(await timed(account.username))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 <= ratio <= 2, (ratio, unknown, known)


BURST = 200


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("settings_overrides", [{"BCRYPT_ROUNDS": 6}], ids=["rounds6"])
async def test_a_burst_of_sign_ups_then_logins_all_succeed_on_the_embedded_default(
    live_server: LiveServer,
) -> None:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(base_url=live_server.http_url, timeout=60,
                                 limits=limits) as c:
        async def sign_up(i: int) -> httpx.Response:
            return await c.post("/api/v1/users", json={
                "email": f"burst{i}@example.com", "username": f"burst{i}",
                "password": PASSWORD})

        async def login(i: int) -> httpx.Response:
            return await c.post("/api/v1/auth/login",
                                json={"identifier": f"burst{i}", "password": PASSWORD})

        signed = await asyncio.gather(*(sign_up(i) for i in range(BURST)))
        assert [r.status_code for r in signed] == [201] * BURST, {
            r.status_code: r.text for r in signed if r.status_code != 201}
        logged = await asyncio.gather(*(login(i) for i in range(BURST)))
        assert [r.status_code for r in logged] == [200] * BURST, {
            r.status_code: r.text for r in logged if r.status_code != 200}
        assert len({r.json()["user"]["id"] for r in logged}) == BURST


@pytest.mark.parametrize("settings_overrides", [{"DB_POOL_SIZE": 1, "DB_POOL_TIMEOUT_S": 0.3}],
                         ids=["pool1"])
async def test_an_exhausted_pool_answers_503_busy_with_retry_after(
    client: httpx.AsyncClient, app: FastAPI,
) -> None:
    account = await sign_up_and_login(client)
    held: list[Any] = []
    try:
        # Take every connection the pool will give (its size and overflow): the next checkout
        # waits DB_POOL_TIMEOUT_S and fails.
        with pytest.raises(sqlalchemy.exc.TimeoutError):
            for _ in range(100):
                held.append(await app.state.engine.connect())
        assert held
        for request in (client.get("/api/v1/users/me", headers=account.headers),
                        client.post("/api/v1/projects", json={"name": "p"},
                                    headers=account.headers),
                        client.post("/api/v1/auth/login", json={
                            "identifier": account.username, "password": PASSWORD})):
            r = await request
            assert_error(r, 503, "busy")
            assert int(r.headers["retry-after"]) >= 1
    finally:
        for conn in held:
            await conn.close()
    # Once connections are free again, the same requests succeed.
    r = await client.get("/api/v1/users/me", headers=account.headers)
    assert r.status_code == 200, r.text
