"""Staff login hardening (issue 18, finding 2): throttling with exponential lock-out in the
database, 429 with Retry-After, the login log, and an event loop that stays responsive while
Argon2 runs in worker threads."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.accounts import staff, throttle
from bot.keys import DB

PASSWORD = "correct-horse-42"


async def _account(client, username: str = "clerk-1", role: str = staff.CENTRE_STAFF) -> None:
    await staff.create_or_update(client.app[DB], username, PASSWORD, role, None if role == staff.ADMIN else "c1")


async def _login(client, username: str, password: str):
    return await client.post("/api/v1/staff/login", json={"username": username, "password": password})


def test_lock_doubles_after_the_free_failures_up_to_the_cap():
    limit = throttle.Limit(free=3, base=timedelta(seconds=10), cap=timedelta(seconds=60))
    assert [lock_s.total_seconds() for lock_s in (throttle.lock_for(n, limit) for n in range(1, 8))] == [
        0, 0, 10, 20, 40, 60, 60]


async def test_wrong_passwords_lock_the_account_with_retry_after(client):
    await _account(client)
    for _ in range(throttle.ACCOUNT.free - 1):
        response = await _login(client, "clerk-1", "wrong-password")
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_credentials"
    locking = await _login(client, "clerk-1", "wrong-password")
    assert locking.status == 429
    refused = await _login(client, "clerk-1", PASSWORD)  # even the right password, while locked
    assert refused.status == 429
    body = await refused.json()
    assert body["error"]["code"] == "too_many_login_attempts"
    assert "秒后再试" in body["error"]["message"]  # the first lock is 30 s
    assert 1 <= int(refused.headers["Retry-After"]) <= throttle.ACCOUNT.base.total_seconds()
    # the counter is in the database, so every instance sees the same lock
    stored = await client.app[DB][throttle.COLLECTION].find_one({"_id": "account:clerk-1"})
    assert stored["failures"] == throttle.ACCOUNT.free and stored["locked_until"] and stored["expires_at"]


async def test_one_address_trying_many_accounts_is_locked(client):
    await _account(client, "clerk-2")
    for n in range(throttle.ADDRESS.free):
        await _login(client, f"guess-{n}", "wrong-password")
    response = await _login(client, "clerk-2", PASSWORD)
    assert response.status == 429 and "Retry-After" in response.headers


async def test_success_clears_the_account_counter_and_everything_is_logged(client):
    await _account(client, "clerk-3")
    await _account(client, "boss", staff.ADMIN)
    assert (await _login(client, "clerk-3", "wrong-password")).status == 401
    ok = await _login(client, "clerk-3", PASSWORD)
    assert ok.status == 200 and (await ok.json())["must_change_password"] is False
    assert await client.app[DB][throttle.COLLECTION].find_one({"_id": "account:clerk-3"}) is None

    clerk = {"Authorization": f"Bearer {(await ok.json())['token']}"}
    own = await (await client.get("/api/v1/staff/login-log", headers=clerk, params={"username": "boss"})).json()
    assert {e["username"] for e in own["entries"]} == {"clerk-3"}  # a clerk sees only their own
    boss = await _login(client, "boss", PASSWORD)
    admin = {"Authorization": f"Bearer {(await boss.json())['token']}"}
    log = await (await client.get("/api/v1/staff/login-log", headers=admin,
                                  params={"username": "clerk-3"})).json()
    assert [e["outcome"] for e in log["entries"]] == ["success", "failure"]
    assert all(e["address"] for e in log["entries"])


async def test_healthz_answers_during_a_burst_of_logins(client):
    await _account(client, "clerk-4")
    burst = [asyncio.create_task(_login(client, f"nobody-{n}", "wrong-password")) for n in range(12)]
    await asyncio.sleep(0.05)  # the burst is under way
    health = await asyncio.wait_for(client.get("/healthz"), timeout=10)  # a generous bound, not a timing test
    assert health.status == 200
    statuses = [r.status for r in await asyncio.gather(*burst)]
    assert set(statuses) <= {401, 429}
