"""The notification outbox: every message that should reach a person is a document written in
the same database step (transaction) as the change that causes it. The dispatcher
(``bot/notify/dispatcher.py``) claims and sends them.

A notification may carry a ``key`` (unique): enqueueing the same key twice keeps the first, and
``cancel``/``reschedule`` find reminders by key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes

COLLECTION = "notifications"

PENDING, SENDING, SENT, FAILED, CANCELLED = "pending", "sending", "sent", "failed", "cancelled"

declare_indexes(
    COLLECTION,
    IndexModel([("status", ASCENDING), ("due_at", ASCENDING)], name="status_due"),
    IndexModel("key", unique=True, name="key_unique",
               partialFilterExpression={"key": {"$type": "string"}}),
)


async def enqueue(
    db: AsyncDatabase,
    *,
    kind: str,
    openid: str,
    payload: dict[str, Any],
    due_at: datetime | None = None,
    key: str | None = None,
    session: AsyncClientSession | None = None,
) -> None:
    """Add a notification for the resident ``openid``; pass the caller's transaction ``session``."""
    now = datetime.now(UTC)
    document: dict[str, Any] = {
        "kind": kind, "openid": openid, "payload": payload, "due_at": due_at or now,
        "status": PENDING, "attempts": 0, "last_error": None, "channel": None,
        "created_at": now, "updated_at": now,
    }
    if key is not None:
        document["key"] = key
    try:
        await db[COLLECTION].insert_one(document, session=session)
    except DuplicateKeyError:
        if session is not None:
            raise  # inside a transaction the error aborts it; callers use keys outside them
        # the same key was enqueued before: keep the first


async def cancel(db: AsyncDatabase, key: str, session: AsyncClientSession | None = None) -> bool:
    """Cancel a notification that has not been sent yet (a reminder of a cancelled booking)."""
    result = await db[COLLECTION].update_one(
        {"key": key, "status": PENDING},
        {"$set": {"status": CANCELLED, "updated_at": datetime.now(UTC)}},
        session=session,
    )
    return result.modified_count == 1


async def reschedule(
    db: AsyncDatabase, key: str, due_at: datetime, payload: dict[str, Any] | None = None,
    session: AsyncClientSession | None = None,
) -> bool:
    """Move a pending notification (a reminder of a rescheduled booking) to a new time."""
    update: dict[str, Any] = {"due_at": due_at, "updated_at": datetime.now(UTC)}
    if payload is not None:
        update["payload"] = payload
    result = await db[COLLECTION].update_one(
        {"key": key, "status": PENDING}, {"$set": update}, session=session
    )
    return result.modified_count == 1
