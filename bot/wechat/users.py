"""Residents as WeChat users, keyed by openid (``_id``).

Fields: ``first_seen``, ``last_seen``, ``unionid`` (mini-program login, when WeChat gives one),
``subscribed`` with ``subscribed_at``/``unsubscribed_at`` (official account), ``last_message_at``
(the last message that opened the 48-hour customer-service window, see ``in_service_window``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.group_commit import GroupCommit, write

COLLECTION = "users"


async def touch_user(db: AsyncDatabase, openid: str, *, group: GroupCommit | None = None, new: bool = False,
                     **fields: Any) -> None:
    """Create the user on first sight and record that they were seen now (and ``fields``);
    ``group`` lets the chat group-commit it. ``new``: probably not stored yet, so try an insert first
    (several times cheaper for the database than an upsert) and update only if the user exists."""
    now = datetime.now(UTC)
    if new:
        try:
            await write(db, COLLECTION, InsertOne({"_id": openid, "first_seen": now, "last_seen": now, **fields}),
                        group)
            return
        except DuplicateKeyError:
            pass
    update = {"$setOnInsert": {"first_seen": now}, "$set": {"last_seen": now, **fields}}
    await write(db, COLLECTION, UpdateOne({"_id": openid}, update, upsert=True), group)


# The customer-service window: WeChat accepts customer-service messages for 48 hours after the
# user's last message (or menu click, subscription, scan).
SERVICE_WINDOW = timedelta(hours=48)


async def record_interaction(
    db: AsyncDatabase, openid: str, *, opens_window: bool, subscribed: bool | None = None,
    group: GroupCommit | None = None, new: bool = False,
) -> None:
    """One chat message or event from ``openid``: seen now; ``opens_window`` for the kinds that
    (re)open the 48-hour window; ``subscribed`` on subscribe/unsubscribe; ``new`` see ``touch_user``."""
    now = datetime.now(UTC)
    fields: dict[str, Any] = {}
    if opens_window:
        fields["last_message_at"] = now
    if subscribed is not None:
        fields["subscribed"] = subscribed
        fields["subscribed_at" if subscribed else "unsubscribed_at"] = now
    await touch_user(db, openid, group=group, new=new, **fields)


async def record_login(db: AsyncDatabase, openid: str, unionid: str | None = None) -> None:
    """A mini-program login; keeps the UnionID that links the mini-program and official account."""
    await touch_user(db, openid, **({"unionid": unionid} if unionid else {}))


async def in_service_window(db: AsyncDatabase, openid: str, now: datetime | None = None) -> bool:
    """True while a customer-service message to ``openid`` is allowed (48 h after the last message)."""
    user = await db[COLLECTION].find_one({"_id": openid}, {"last_message_at": 1})
    last = user.get("last_message_at") if user else None
    return last is not None and last > (now or datetime.now(UTC)) - SERVICE_WINDOW
