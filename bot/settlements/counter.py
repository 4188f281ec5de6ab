"""The counter's one-time codes: the mini-program shows a resident a short code (10 minutes, single
use) so staff at the service centre act on the right account (bind a verified identity to it, or
record a family grant to it) without ever typing an openid. Only the code's hash is stored."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.settlements.verification import CODE_LIFETIME, code_hash, new_counter_code

COLLECTION = "counter_codes"

declare_indexes(COLLECTION, IndexModel("expires_at", expireAfterSeconds=0, name="expires_at_ttl"))


async def issue(db: AsyncDatabase, openid: str) -> tuple[str, datetime]:
    """A new code for the resident (an earlier unused one of theirs stops working)."""
    now = datetime.now(UTC)
    await db[COLLECTION].delete_many({"openid": openid})
    for _ in range(5):
        code = new_counter_code()
        try:
            await db[COLLECTION].insert_one({"_id": code_hash(code), "openid": openid, "created_at": now,
                                             "expires_at": now + CODE_LIFETIME})
            return code, now + CODE_LIFETIME
        except DuplicateKeyError:  # another resident holds that code right now
            continue
    raise RuntimeError("no free counter code")


async def consume(db: AsyncDatabase, code: str) -> str | None:
    """The openid the code belongs to, used up by this call; None when unknown or expired."""
    document = await db[COLLECTION].find_one_and_delete(
        {"_id": code_hash(code.strip()), "expires_at": {"$gt": datetime.now(UTC)}})
    return document["openid"] if document else None
