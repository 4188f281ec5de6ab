"""Short-lived conversation state per chat user (the FAQ choices a number reply refers to, a
cancellation waiting for "确认" …), in MongoDB so every instance sees it, expiring by TTL.

One document per (openid, key): ``{_id: "<openid>:<key>", openid, key, value, expires_at}``.
Values must be BSON-serialisable (str, int, list, dict …).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "chat_state"
DEFAULT_TTL = timedelta(minutes=30)

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


def _id(openid: str, key: str) -> str:
    return f"{openid}:{key}"


async def remember(db: AsyncDatabase, openid: str, key: str, value: Any, ttl: timedelta = DEFAULT_TTL) -> None:
    await db[COLLECTION].update_one(
        {"_id": _id(openid, key)},
        {"$set": {"openid": openid, "key": key, "value": value, "expires_at": datetime.now(UTC) + ttl}},
        upsert=True,
    )


async def recall(db: AsyncDatabase, openid: str, key: str, default: Any = None) -> Any:
    document = await db[COLLECTION].find_one({"_id": _id(openid, key)})
    if document is None or document["expires_at"] <= datetime.now(UTC):
        return default  # the TTL monitor removes expired documents only about once a minute
    return document["value"]


async def forget(db: AsyncDatabase, openid: str, key: str) -> None:
    await db[COLLECTION].delete_one({"_id": _id(openid, key)})
