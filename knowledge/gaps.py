"""Knowledge gaps: questions the FAQ declined or was unsure about, counted per normalised question.

One document per normalised question (unique index on ``key``), updated with a single atomic upsert:
``count`` grows by one, ``first_seen`` is set on insert only, ``last_seen``, the last wording and what
was suggested are overwritten. Phone and ID numbers are masked before anything is stored, so the key
and the text never hold them. Two first-time upserts of the same question can race on the unique
index; the loser gets DuplicateKeyError and retries as a plain update.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.masking import mask_text
from knowledge.normalise import normalise

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from knowledge.engine import Answer

COLLECTION = "faq_gaps"
MAX_STORED_CHARS = 500

declare_indexes(
    COLLECTION,
    IndexModel([("key", 1)], unique=True, name="faq_gaps_key"),
    IndexModel([("count", DESCENDING), ("last_seen", DESCENDING)], name="faq_gaps_frequency"),
)


def gap_key(question: str) -> str:
    return normalise(mask_text(question))[:MAX_STORED_CHARS]


def _storable(text: str) -> str:
    """Masked text that BSON can encode (lone surrogates replaced)."""
    return mask_text(text).strip()[:MAX_STORED_CHARS].encode("utf-8", "replace").decode("utf-8")


async def record_gap(db: AsyncDatabase, question: str, result: Answer) -> None:
    """Store ``question`` if ``result`` neither answered it nor rejected it as non-question input."""
    if result.answered or result.reason is not None or not isinstance(question, str):
        return
    key = _storable(gap_key(question))
    if not key:
        return
    now = datetime.now(UTC)
    update = {
        "$inc": {"count": 1},
        "$setOnInsert": {"first_seen": now},
        "$set": {"last_seen": now, "question": _storable(question), "decision": result.decision,
                 "score": result.score, "suggestions": list(result.suggestions)},
    }
    for attempt in range(3):
        try:
            await db[COLLECTION].update_one({"key": key}, update, upsert=True)
            return
        except DuplicateKeyError:
            if attempt == 2:
                raise


async def list_gaps(db: AsyncDatabase, limit: int = 50, skip: int = 0) -> list[dict[str, Any]]:
    """Gaps, most frequent first (then most recent)."""
    cursor = (db[COLLECTION].find({}, {"_id": 0}).sort([("count", DESCENDING), ("last_seen", DESCENDING)])
              .skip(skip).limit(limit))
    return [document async for document in cursor]


async def count_gaps(db: AsyncDatabase) -> int:
    return await db[COLLECTION].count_documents({})
