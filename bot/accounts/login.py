"""Staff sign-in, the one path the JSON API and the console share: refuse while the account or
the address is locked (before any Argon2 work), verify off the event loop, count the failure or
clear the account's counter, and write the login log."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts import login_log, staff, throttle


class LoginRefusedError(Exception):
    """Wrong credentials (``retry_after`` 0) or locked out (``retry_after`` seconds)."""

    def __init__(self, retry_after: int = 0) -> None:
        super().__init__("login refused")
        self.retry_after = retry_after


def wait_text(seconds: int) -> str:
    """How long a locked login waits, as staff read it: 30 秒, 约 2 分钟, 约 1 小时."""
    if seconds < 60:
        return f"{max(1, seconds)} 秒"
    if seconds < 3600:
        return f"约 {round(seconds / 60)} 分钟"
    return f"约 {round(seconds / 3600)} 小时"


async def sign_in(db: AsyncDatabase, username: str, password: str, address: str, *,
                  channel: str = "api", now: datetime | None = None) -> staff.StaffMember:
    now = now or datetime.now(UTC)
    username, password = username.strip()[:64], password[:256]
    wait = await throttle.retry_after(db, username, address, now)
    if wait:
        await login_log.record(db, username, address, login_log.LOCKED, channel=channel, now=now)
        raise LoginRefusedError(wait)
    member = await staff.authenticate(db, username, password)
    if member is None:
        await login_log.record(db, username, address, login_log.FAILURE, channel=channel, now=now)
        raise LoginRefusedError(await throttle.record_failure(db, username, address, now))
    await throttle.record_success(db, username)
    await login_log.record(db, username, address, login_log.SUCCESS, channel=channel, now=now)
    return member
