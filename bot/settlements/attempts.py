"""Limits on insured-identity bind and verify attempts, per account and per identity, with the
counts in MongoDB so every instance shares them.

Fixed windows: one counter document per (scope, key, window start), incremented atomically by an
upserting ``find_one_and_update``; an attempt is allowed while the count after the increment is at
most the limit. Documents carry ``expires_at`` and a TTL index removes them after their window
(correctness never depends on the removal: the window start is part of the ``_id``).

Why our own documents and not a library: ``limits`` (the well-kept rate-limiting library, 5.8)
has an asynchronous MongoDB storage, but it depends on Motor, which reached end of life in May
2026, and it opens its own client from a URI instead of using the application's
``AsyncMongoClient``. No maintained library supports PyMongo's async API; one atomic update is all
this needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.config import Settings
from bot.db import declare_indexes

COLLECTION = "rate_counters"
ACCOUNT, IDENTITY = "bind_account", "bind_identity"

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_at_ttl"))


@dataclass(frozen=True)
class Limit:
    scope: str
    limit: int
    window: timedelta


class LimitExceededError(Exception):
    def __init__(self, scope: str, retry_after: timedelta) -> None:
        super().__init__(scope)
        self.scope = scope
        self.retry_after = retry_after


def bind_limits(settings: Settings) -> tuple[Limit, Limit]:
    """The per-account and per-identity limits of bind and verify attempts."""
    window = timedelta(minutes=settings.bind_attempt_window_minutes)
    return (Limit(ACCOUNT, settings.bind_attempts_per_account, window),
            Limit(IDENTITY, settings.bind_attempts_per_identity, window))


def window_start(now: datetime, window: timedelta) -> datetime:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def hit(db: AsyncDatabase, rule: Limit, key: str, now: datetime | None = None) -> None:
    """Count one attempt; raises ``LimitExceededError`` when it is over the limit (the attempt still counts)."""
    now = now or datetime.now(UTC)
    start = window_start(now, rule.window)
    document_id = f"{rule.scope}:{key}:{int(start.timestamp())}"
    update = {"$inc": {"count": 1},
              "$setOnInsert": {"scope": rule.scope, "window_start": start, "expires_at": start + rule.window * 2}}
    for attempt in range(2):
        try:
            document = await db[COLLECTION].find_one_and_update(
                {"_id": document_id}, update, upsert=True, return_document=ReturnDocument.AFTER)
            break
        except DuplicateKeyError:  # two first attempts raced on the upsert: the loser increments
            if attempt:
                raise
    if document["count"] > rule.limit:
        raise LimitExceededError(rule.scope, start + rule.window - now)
