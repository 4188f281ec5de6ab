"""Residents as WeChat users, keyed by openid (``_id``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

COLLECTION = "users"


async def touch_user(db: AsyncDatabase, openid: str, **fields: Any) -> None:
    """Create the user on first sight and record that they were seen now."""
    now = datetime.now(UTC)
    await db[COLLECTION].update_one(
        {"_id": openid},
        {"$setOnInsert": {"first_seen": now}, "$set": {"last_seen": now, **fields}},
        upsert=True,
    )
