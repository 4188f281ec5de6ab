"""Deduplication of WeChat callback deliveries, shared by every instance through MongoDB.

WeChat retries a message it got no answer for within 5 s (3 tries in all), and the retries may
reach different instances. The first delivery *claims* the message (insert with a unique ``_id``);
the others wait for the reply it stores and answer the same.

Key: ``msg:<MsgId>`` for messages, ``event:<FromUserName>:<CreateTime>:<Event>`` for events
(which carry no MsgId). Documents expire after ``TTL``.

States: ``processing`` → ``done`` (reply stored) or ``processing`` → ``late`` (the handler missed
the passive-reply deadline, the caller answered ``success`` and the reply goes out later as a
customer-service message; deliveries of a late message answer ``success`` too, so the user does not
get the reply twice). The winner of a crashed instance is not taken over: WeChat stops retrying
after about 15 s, long before anyone could tell a crash from a slow handler.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes

COLLECTION = "wechat_dedupe"
TTL = timedelta(hours=1)
PROCESSING, DONE, LATE = "processing", "done", "late"

# The stored reply: {"type": "text", "content": str} | {"type": "transfer"} | {"type": "empty"}
EMPTY: dict[str, Any] = {"type": "empty"}

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


def key_for(fields: dict[str, Any]) -> str:
    """The dedupe key of a parsed callback message (see ``bot.wechat_callback.parse_xml``)."""
    sender, created = fields["FromUserName"], fields["CreateTime"].strip()
    if fields["MsgType"].strip().lower() == "event":
        return f"event:{sender}:{created}:{str(fields.get('Event', '')).strip().lower()}"
    msg_id = str(fields.get("MsgId", "")).strip()
    return f"msg:{msg_id}" if msg_id else f"msg:{sender}:{created}:{fields['MsgType'].strip().lower()}"


async def claim(db: AsyncDatabase, key: str) -> bool:
    """True for exactly one caller per key (within ``TTL``)."""
    now = datetime.now(UTC)
    try:
        await db[COLLECTION].insert_one({"_id": key, "status": PROCESSING, "created_at": now,
                                         "expires_at": now + TTL})
    except DuplicateKeyError:
        return False
    return True


async def finish(db: AsyncDatabase, key: str, reply: dict[str, Any]) -> bool:
    """Store the reply; False when the message was marked late meanwhile (deliver it another way)."""
    result = await db[COLLECTION].update_one(
        {"_id": key, "status": PROCESSING},
        {"$set": {"status": DONE, "reply": reply, "finished_at": datetime.now(UTC)}},
    )
    if result.modified_count == 1:
        return True
    await db[COLLECTION].update_one(
        {"_id": key}, {"$set": {"late_reply": reply, "finished_at": datetime.now(UTC)}}
    )
    return False


async def mark_late(db: AsyncDatabase, key: str) -> dict[str, Any] | None:
    """Called when the deadline passes: None if now marked late, else the reply that was just stored."""
    result = await db[COLLECTION].update_one(
        {"_id": key, "status": PROCESSING}, {"$set": {"status": LATE, "late_at": datetime.now(UTC)}}
    )
    if result.modified_count == 1:
        return None
    document = await db[COLLECTION].find_one({"_id": key})
    return (document or {}).get("reply") or EMPTY


async def note_late_delivery(db: AsyncDatabase, key: str, outcome: str) -> None:
    await db[COLLECTION].update_one({"_id": key}, {"$set": {"late_delivery": outcome}})


async def wait_for_reply(db: AsyncDatabase, key: str, timeout: float) -> dict[str, Any] | None:
    """The reply stored by the delivery that claimed ``key``: ``EMPTY`` if it was late, None if it
    is still working when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        document = await db[COLLECTION].find_one({"_id": key}, {"status": 1, "reply": 1})
        if document is not None and document["status"] == DONE:
            return document["reply"]
        if document is not None and document["status"] == LATE:
            return EMPTY
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.2)
