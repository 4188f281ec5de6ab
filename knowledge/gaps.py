"""Knowledge gaps: questions the FAQ declined or was unsure about, counted per normalised question.

One document per normalised question (unique index on ``key``), updated with a single atomic upsert:
``count`` grows by one, ``first_seen`` is set on insert only, ``last_seen``, the last wording and what
was suggested are overwritten. Phone and ID numbers are masked before anything is stored, so the key
and the text never hold them. Two first-time upserts of the same question can race on the unique
index; the loser gets DuplicateKeyError and retries as a plain update.

Flooding (``/api/v1/faq/ask`` is public): each asker — the client address of the API request, taken
from ``bot.logs.request_origin_var`` unless ``source`` is given — adds at most ``daily_limit``
questions (new or repeated) per day (Asia/Shanghai); the rest are only counted, per day, in
``faq_gap_days`` (``over_quota``, and ``capped_sources``: how many askers hit the cap), which
``gap_volume`` reports, so staff see the volume without the list being drowned. Addresses are kept
only as an unkeyed SHA-256 prefix in the quota documents, which expire after two days. The chat
(WeChat users, known by openid) is not capped here: it passes no source.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pymongo import DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.logs import request_origin_var
from bot.masking import mask_text
from knowledge.normalise import normalise

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from knowledge.engine import Answer

COLLECTION = "faq_gaps"
QUOTA = "faq_gap_quota"  # one document per asker and day: how many questions it added
DAYS = "faq_gap_days"  # one document per day: recorded and over-quota volume
MAX_STORED_CHARS = 500
DEFAULT_DAILY_LIMIT = 20
_SHANGHAI = ZoneInfo("Asia/Shanghai")

declare_indexes(
    COLLECTION,
    IndexModel([("key", 1)], unique=True, name="faq_gaps_key"),
    IndexModel([("count", DESCENDING), ("last_seen", DESCENDING)], name="faq_gaps_frequency"),
)
declare_indexes(QUOTA, IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"))


def gap_key(question: str) -> str:
    return normalise(mask_text(question))[:MAX_STORED_CHARS]


def _storable(text: str) -> str:
    """Masked text that BSON can encode (lone surrogates replaced)."""
    return mask_text(text).strip()[:MAX_STORED_CHARS].encode("utf-8", "replace").decode("utf-8")


async def _within_quota(db: AsyncDatabase, source: str, limit: int, now: datetime, day: str) -> bool:
    """Count one question of ``source`` today; False (and counted as over quota) beyond ``limit``."""
    digest = hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()[:24]
    update = {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": now + timedelta(days=2)}}
    for attempt in range(2):
        try:
            quota = await db[QUOTA].find_one_and_update({"_id": f"{day}|{digest}"}, update, upsert=True,
                                                        return_document=ReturnDocument.AFTER)
            break
        except DuplicateKeyError:  # two first questions of the same asker at once
            if attempt:
                raise
    if quota["count"] <= limit:
        return True
    over: dict[str, int] = {"over_quota": 1}
    if quota["count"] == limit + 1:
        over["capped_sources"] = 1
    await _count_day(db, day, over)
    return False


async def _count_day(db: AsyncDatabase, day: str, counts: dict[str, int]) -> None:
    for attempt in range(2):
        try:
            await db[DAYS].update_one({"_id": day}, {"$inc": counts}, upsert=True)
            return
        except DuplicateKeyError:
            if attempt:
                raise


async def record_gap(db: AsyncDatabase, question: str, result: Answer, *, source: str | None = None,
                     daily_limit: int | None = None) -> bool:
    """Store ``question`` if ``result`` neither answered it nor rejected it as non-question input and
    its asker is within today's quota. ``source`` defaults to the API request's client address;
    ``daily_limit`` to the request's configured ``FAQ_GAPS_PER_ADDRESS_PER_DAY``. True if stored."""
    if result.answered or result.reason is not None or not isinstance(question, str):
        return False
    key = _storable(gap_key(question))
    if not key:
        return False
    now = datetime.now(UTC)
    day = now.astimezone(_SHANGHAI).date().isoformat()
    origin = request_origin_var.get()
    if source is None and origin is not None:
        source = origin.address
    if daily_limit is None:
        daily_limit = origin.faq_gaps_per_day if origin is not None else DEFAULT_DAILY_LIMIT
    if source is not None and not await _within_quota(db, source, daily_limit, now, day):
        return False
    update = {
        "$inc": {"count": 1},
        "$setOnInsert": {"first_seen": now},
        "$set": {"last_seen": now, "question": _storable(question), "decision": result.decision,
                 "score": result.score, "suggestions": list(result.suggestions)},
    }
    for attempt in range(3):
        try:
            await db[COLLECTION].update_one({"key": key}, update, upsert=True)
            break
        except DuplicateKeyError:
            if attempt == 2:
                raise
    await _count_day(db, day, {"recorded": 1})
    return True


async def list_gaps(db: AsyncDatabase, limit: int = 50, skip: int = 0) -> list[dict[str, Any]]:
    """Gaps, most frequent first (then most recent)."""
    cursor = (db[COLLECTION].find({}, {"_id": 0}).sort([("count", DESCENDING), ("last_seen", DESCENDING)])
              .skip(skip).limit(limit))
    return [document async for document in cursor]


async def count_gaps(db: AsyncDatabase) -> int:
    return await db[COLLECTION].count_documents({})


async def gap_volume(db: AsyncDatabase, days: int = 14) -> list[dict[str, Any]]:
    """Per day (newest first, at most ``days``): questions recorded, questions over an asker's daily
    quota (counted, not listed) and how many askers hit the quota."""
    cursor = db[DAYS].find({}).sort("_id", DESCENDING).limit(days)
    return [{"day": d["_id"], "recorded": d.get("recorded", 0), "over_quota": d.get("over_quota", 0),
             "capped_sources": d.get("capped_sources", 0)} async for d in cursor]
