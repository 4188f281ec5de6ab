"""Bearer sessions for residents and staff: opaque random tokens, stored only as a SHA-256 hash,
expiring (TTL index) and revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "sessions"
RESIDENT = "resident"
STAFF = "staff"

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(
    db: AsyncDatabase, kind: str, subject: str, ttl: timedelta = timedelta(days=7), **claims: Any
) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    expires_at = now + ttl
    await db[COLLECTION].insert_one(
        {"_id": _token_hash(token), "kind": kind, "subject": subject, "created_at": now,
         "expires_at": expires_at, **claims}
    )
    return token, expires_at


async def resolve(db: AsyncDatabase, token: str, kind: str) -> dict[str, Any] | None:
    """The live session of that kind for ``token``, or None (unknown, expired or revoked)."""
    session = await db[COLLECTION].find_one({"_id": _token_hash(token), "kind": kind})
    if session is None or session["expires_at"] <= datetime.now(UTC):
        return None  # the TTL monitor deletes expired sessions only once a minute
    return session


async def revoke(db: AsyncDatabase, token: str) -> bool:
    result = await db[COLLECTION].delete_one({"_id": _token_hash(token)})
    return result.deleted_count == 1

