"""Insured identities that residents bind (themselves or family members), stored as keyed hash +
masked form only (see ``bot.settlements.id_numbers``). Binding and matching settlements is in
``bot.settlements.store.bind_identity``; this module is the storage.

``identity_anchors`` holds one document per identity hash. Every transaction that reads the
bindings of an identity to notify them, and every transaction that adds a binding, increments the
same anchor, so the two always conflict and one is retried: a settlement event and a binding that
arrive at the same moment cannot miss each other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes

COLLECTION = "insured_identities"
ANCHORS = "identity_anchors"
MAX_PER_RESIDENT = 10

_NAME = re.compile(r"^[\u3400-\u9fffA-Za-z][\u3400-\u9fffA-Za-z·• .]{0,29}$")

declare_indexes(
    COLLECTION,
    IndexModel([("openid", ASCENDING), ("id_hash", ASCENDING)], unique=True, name="openid_identity_unique"),
    IndexModel("id_hash", name="id_hash"),
)


def valid_name(raw: object) -> str | None:
    """The insured person's name as given (Chinese, or letters; · for minority names), or None."""
    if not isinstance(raw, str):
        return None
    name = " ".join(raw.split())
    return name if _NAME.match(name) else None


async def ensure_anchor(db: AsyncDatabase, id_hash: str) -> None:
    """Create the anchor outside any transaction (concurrent creators are harmless)."""
    try:
        await db[ANCHORS].update_one(
            {"_id": id_hash}, {"$setOnInsert": {"version": 0, "created_at": datetime.now(UTC)}}, upsert=True
        )
    except DuplicateKeyError:
        pass


async def touch_anchor(db: AsyncDatabase, id_hash: str, session: AsyncClientSession) -> None:
    await db[ANCHORS].update_one({"_id": id_hash}, {"$inc": {"version": 1}}, session=session)


async def bindings_of_identity(
    db: AsyncDatabase, id_hash: str, session: AsyncClientSession | None = None
) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"id_hash": id_hash}, session=session).to_list()


async def bindings_of_resident(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"openid": openid}).sort("created_at", ASCENDING).to_list()


async def find_binding(
    db: AsyncDatabase, openid: str, id_hash: str, session: AsyncClientSession | None = None
) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"openid": openid, "id_hash": id_hash}, session=session)


async def count_of_resident(db: AsyncDatabase, openid: str, session: AsyncClientSession | None = None) -> int:
    return await db[COLLECTION].count_documents({"openid": openid}, session=session)


def new_binding(openid: str, name: str, id_kind: str, id_hash: str, id_masked: str) -> dict[str, Any]:
    return {
        "_id": ObjectId(), "openid": openid, "name": name, "id_kind": id_kind, "id_hash": id_hash,
        "id_masked": id_masked, "created_at": datetime.now(UTC),
    }


async def delete_binding(db: AsyncDatabase, openid: str, binding_id: str) -> bool:
    try:
        oid = ObjectId(binding_id)
    except (InvalidId, TypeError):
        return False
    result = await db[COLLECTION].delete_one({"_id": oid, "openid": openid})
    return result.deleted_count == 1


def binding_view(binding: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(binding["_id"]),
        "name": binding["name"],
        "id_kind": binding["id_kind"],
        "id_number_masked": binding["id_masked"],
        "created_at": binding["created_at"],
    }
