"""Short-lived conversation state per chat user (the FAQ choices a number reply refers to, a
cancellation waiting for "确认" …), in MongoDB so every instance sees it, expiring by TTL.

Append-only: ``remember`` inserts ``{openid, key, value, at, expires_at}`` and ``forget`` inserts a
tombstone (``value: None``); ``recall`` reads the latest document for (openid, key). Inserts are
several times cheaper than updates for the database and can be group-committed with the other
writes of a chat message; the TTL index removes old versions. A user's messages are handled one
after another, so "latest by ``at`` (then ``_id``)" is the last thing remembered.
Values must be BSON-serialisable (str, int, list, dict …); remembering None is forgetting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, InsertOne
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes
from bot.group_commit import GroupCommit, write

COLLECTION = "chat_state"
DEFAULT_TTL = timedelta(minutes=30)

declare_indexes(
    COLLECTION,
    IndexModel([("openid", ASCENDING), ("key", ASCENDING), ("at", DESCENDING)], name="openid_key_latest"),
    IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"),
)


async def remember(
    db: AsyncDatabase, openid: str, key: str, value: Any, ttl: timedelta = DEFAULT_TTL,
    group: GroupCommit | None = None,
) -> None:
    now = datetime.now(UTC)
    document = {"openid": openid, "key": key, "value": value, "at": now, "expires_at": now + ttl}
    await write(db, COLLECTION, InsertOne(document), group)


async def recall(db: AsyncDatabase, openid: str, key: str, default: Any = None) -> Any:
    latest = [("at", DESCENDING), ("_id", DESCENDING)]
    document = await db[COLLECTION].find_one({"openid": openid, "key": key}, sort=latest)
    if document is None or document["value"] is None or document["expires_at"] <= datetime.now(UTC):
        return default  # the TTL monitor removes expired documents only about once a minute
    return document["value"]


async def forget(db: AsyncDatabase, openid: str, key: str, group: GroupCommit | None = None) -> None:
    await remember(db, openid, key, None, DEFAULT_TTL, group)
