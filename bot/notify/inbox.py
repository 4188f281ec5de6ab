"""The in-app inbox (站内消息): a copy of every notification the dispatcher handles, whatever
channel also carried it. The entry's ``_id`` is the notification's id, so a copy written twice
(a dispatcher that crashed and was replaced) is still one entry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from bot.db import declare_indexes
from bot.group_commit import DUPLICATE_KEY

COLLECTION = "inbox"
REFERENCE_KEYS = ("settlement_id", "booking_id", "waitlist_id")

declare_indexes(COLLECTION, IndexModel([("openid", 1), ("created_at", DESCENDING)], name="openid_created"))


def entry_for(notification: dict[str, Any], title: str, text: str, link: str | None) -> dict[str, Any]:
    payload = notification.get("payload") or {}
    return {
        "_id": notification["_id"],
        "openid": notification["openid"],
        "kind": notification["kind"],
        "title": title,
        "text": text,
        "link": link,
        "ref": {key: str(payload[key]) for key in REFERENCE_KEYS if payload.get(key) is not None},
        "created_at": notification.get("created_at") or datetime.now(UTC),
        "delivered_at": datetime.now(UTC),
        "read_at": None,
    }


async def add_copies(db: AsyncDatabase, entries: list[dict[str, Any]]) -> None:
    """Insert the entries; one that exists already (same notification) is kept as it is."""
    if not entries:
        return
    try:
        await db[COLLECTION].insert_many(entries, ordered=False)
    except BulkWriteError as exc:
        if any(error.get("code") != DUPLICATE_KEY for error in exc.details.get("writeErrors", [])):
            raise


def _object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


async def entries_for(
    db: AsyncDatabase, openid: str, *, limit: int = 20, before: str | None = None
) -> tuple[list[dict[str, Any]], int] | None:
    """The newest entries (older than the entry ``before``) and the unread count; None if ``before`` is unknown."""
    query: dict[str, Any] = {"openid": openid}
    if before is not None:
        anchor_id = _object_id(before)
        anchor = anchor_id and await db[COLLECTION].find_one({"_id": anchor_id, "openid": openid})
        if not anchor:
            return None
        query["created_at"] = {"$lt": anchor["created_at"]}
    entries = await db[COLLECTION].find(query).sort("created_at", DESCENDING).limit(limit).to_list()
    unread = await db[COLLECTION].count_documents({"openid": openid, "read_at": None})
    return entries, unread


async def mark_read(db: AsyncDatabase, openid: str, entry_id: str) -> dict[str, Any] | None:
    """Mark one of the resident's entries read (idempotent); None if it is not theirs or unknown."""
    oid = _object_id(entry_id)
    if oid is None:
        return None
    entry = await db[COLLECTION].find_one({"_id": oid, "openid": openid})
    if entry is None:
        return None
    if entry["read_at"] is None:
        entry["read_at"] = datetime.now(UTC)
        await db[COLLECTION].update_one({"_id": oid, "read_at": None}, {"$set": {"read_at": entry["read_at"]}})
    return entry


def entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(entry["_id"]),
        "kind": entry["kind"],
        "title": entry["title"],
        "text": entry["text"],
        "link": entry.get("link"),
        "ref": entry.get("ref") or {},
        "created_at": entry["created_at"],
        "read": entry["read_at"] is not None,
        "read_at": entry["read_at"],
    }
