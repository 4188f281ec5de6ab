"""The staff login log: every attempt (success, wrong password, refused while locked) with the
username tried, the client address and the time. Kept 180 days (TTL index); admins read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "staff_login_log"
KEEP = timedelta(days=180)
SUCCESS, FAILURE, LOCKED = "success", "failure", "locked"
OUTCOME_LABELS = {SUCCESS: "登录成功", FAILURE: "用户名或密码错误", LOCKED: "锁定中被拒绝"}

declare_indexes(
    COLLECTION,
    IndexModel("at", expireAfterSeconds=int(KEEP.total_seconds()), name="at_ttl"),
    IndexModel([("username", DESCENDING), ("at", DESCENDING)], name="username_at"),
)


async def record(db: AsyncDatabase, username: str, address: str, outcome: str, *,
                 channel: str = "api", now: datetime | None = None) -> None:
    await db[COLLECTION].insert_one({"username": username[:64], "address": address[:64], "outcome": outcome,
                                     "channel": channel, "at": now or datetime.now(UTC)})


async def entries(db: AsyncDatabase, *, username: str | None = None, outcome: str | None = None,
                  skip: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The newest entries first, and how many match in all."""
    query: dict[str, Any] = {}
    if username:
        query["username"] = username
    if outcome:
        query["outcome"] = outcome
    found = await db[COLLECTION].find(query).sort("at", DESCENDING).skip(skip).limit(limit).to_list(None)
    return found, await db[COLLECTION].count_documents(query)
