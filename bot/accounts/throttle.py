"""Login throttling, shared by every instance through MongoDB: one counter document per account
and per client address. After ``free`` wrong passwords in a row the key is locked, for ``base``
seconds, doubling with each further failure up to ``cap`` (exponential lock-out). A counter is
forgotten (TTL index) ``forget_after`` after its last failure; a successful login clears the
account's counter, never the address's (one address may try many accounts)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "login_throttle"

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


@dataclass(frozen=True)
class Limit:
    free: int  # failures allowed before the first lock
    base: timedelta  # the first lock
    cap: timedelta  # the longest lock


ACCOUNT = Limit(free=5, base=timedelta(seconds=30), cap=timedelta(hours=1))
ADDRESS = Limit(free=20, base=timedelta(seconds=30), cap=timedelta(hours=1))
FORGET_AFTER = timedelta(hours=24)


def lock_for(failures: int, limit: Limit) -> timedelta:
    """How long a key with ``failures`` consecutive failures stays locked (pure)."""
    if failures < limit.free:
        return timedelta(0)
    seconds = limit.base.total_seconds() * 2 ** min(failures - limit.free, 20)
    return min(timedelta(seconds=seconds), limit.cap)


def _keys(username: str, address: str) -> dict[str, Limit]:
    return {f"account:{username}": ACCOUNT, f"address:{address}": ADDRESS}


async def retry_after(db: AsyncDatabase, username: str, address: str, now: datetime | None = None) -> int:
    """Seconds until a login for ``username`` from ``address`` may be tried again (0: now)."""
    now = now or datetime.now(UTC)
    keys = list(_keys(username, address))
    locked = [doc["locked_until"] async for doc in db[COLLECTION].find(
        {"_id": {"$in": keys}, "locked_until": {"$gt": now}}, {"locked_until": 1})]
    if not locked:
        return 0
    return max(1, math.ceil((max(locked).replace(tzinfo=UTC) - now).total_seconds()))


async def record_failure(db: AsyncDatabase, username: str, address: str, now: datetime | None = None) -> int:
    """Count a wrong password for both keys; returns the seconds of the lock it caused (0: none)."""
    now = now or datetime.now(UTC)
    longest = timedelta(0)
    for key, limit in _keys(username, address).items():
        document = await db[COLLECTION].find_one_and_update(
            {"_id": key}, {"$inc": {"failures": 1}, "$set": {"last_failure": now, "expires_at": now + FORGET_AFTER}},
            upsert=True, return_document=ReturnDocument.AFTER)
        lock = lock_for(document["failures"], limit)
        if lock:
            await db[COLLECTION].update_one({"_id": key}, {"$max": {"locked_until": now + lock}})
            longest = max(longest, lock)
    return math.ceil(longest.total_seconds())


async def record_success(db: AsyncDatabase, username: str) -> None:
    await db[COLLECTION].delete_one({"_id": f"account:{username}"})


async def unlock_account(db: AsyncDatabase, username: str) -> None:
    """An admin's reset of a locked account (also done when its password is reset)."""
    await record_success(db, username)
