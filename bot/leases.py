"""Named leases in MongoDB: at most one holder at a time, taken over when the holder's time runs
out (a crashed instance). Used by jobs that must not run in two instances at once and by the
WeChat token refresh."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

COLLECTION = "leases"
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}"  # this process as a holder (jobs, outbox claims)


async def acquire(db: AsyncDatabase, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder``; False while someone else holds it."""
    now = datetime.now(UTC)
    try:
        await db[COLLECTION].update_one(
            {"_id": name, "$or": [{"holder": holder}, {"expires_at": {"$lte": now}}]},
            {"$set": {"holder": holder, "expires_at": now + ttl, "acquired_at": now}},
            upsert=True,
        )
    except DuplicateKeyError:
        return False  # the lease exists, is live and belongs to another holder
    return True


async def release(db: AsyncDatabase, name: str, holder: str) -> None:
    await db[COLLECTION].update_one(
        {"_id": name, "holder": holder}, {"$set": {"expires_at": datetime.now(UTC)}}
    )
