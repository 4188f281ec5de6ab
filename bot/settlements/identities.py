"""Insured identities that residents bind (themselves or family members), stored as keyed hash +
masked form only (see ``bot.settlements.id_numbers``). Binding, verifying and matching settlements
is in ``bot.settlements.store``; this module is the storage.

A binding reveals nothing until it is **verified** (``verified: True``): by WeChat face
verification, by staff at the counter, or (development mode only) by the development verifier.
Settlements are matched on the identity hash *and* the name hash, so a verified binding of the
right number under another name still sees nothing.

``identity_anchors`` holds one document per identity hash. Every transaction that reads the
bindings (or grants) of an identity to notify them, and every transaction that adds a verified
binding or an accepted grant, increments the same anchor, so the two always conflict and one is
retried: a settlement event and a verification that arrive at the same moment cannot miss each other.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes
from bot.settlements.id_numbers import valid_name

__all__ = ["valid_name"]

COLLECTION = "insured_identities"
ANCHORS = "identity_anchors"
MAX_PER_RESIDENT = 10

FACE, COUNTER, DEVELOPMENT = "wechat_face", "counter", "development"
METHOD_LABELS = {FACE: "微信人脸核身", COUNTER: "服务大厅窗口核验", DEVELOPMENT: "开发环境核验（仅测试）"}

declare_indexes(
    COLLECTION,
    IndexModel([("openid", ASCENDING), ("id_hash", ASCENDING)], unique=True, name="openid_identity_unique"),
    IndexModel([("id_hash", ASCENDING), ("verified", ASCENDING)], name="id_hash_verified"),
)


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


async def verified_bindings_of_identity(
    db: AsyncDatabase, id_hash: str, name_hash: str | None, session: AsyncClientSession | None = None
) -> list[dict[str, Any]]:
    """The verified bindings that may see a settlement of this identity and name."""
    if name_hash is None:
        return []
    query = {"id_hash": id_hash, "name_hash": name_hash, "verified": True}
    return await db[COLLECTION].find(query, session=session).to_list()


async def bindings_of_resident(db: AsyncDatabase, openid: str) -> list[dict[str, Any]]:
    return await db[COLLECTION].find({"openid": openid}).sort("created_at", ASCENDING).to_list()


async def find_binding(
    db: AsyncDatabase, openid: str, id_hash: str, session: AsyncClientSession | None = None
) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"openid": openid, "id_hash": id_hash}, session=session)


def object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


async def binding_by_id(db: AsyncDatabase, openid: str, binding_id: str) -> dict[str, Any] | None:
    oid = object_id(binding_id)
    return await db[COLLECTION].find_one({"_id": oid, "openid": openid}) if oid else None


async def count_of_resident(db: AsyncDatabase, openid: str, session: AsyncClientSession | None = None) -> int:
    return await db[COLLECTION].count_documents({"openid": openid}, session=session)


def new_binding(openid: str, name: str, name_hash: str, id_kind: str, id_hash: str, id_masked: str) -> dict[str, Any]:
    return {
        "_id": ObjectId(), "openid": openid, "name": name, "name_hash": name_hash, "id_kind": id_kind,
        "id_hash": id_hash, "id_masked": id_masked, "verified": False, "verification": None,
        "created_at": datetime.now(UTC),
    }


async def delete_binding(db: AsyncDatabase, openid: str, binding_id: str) -> dict[str, Any] | None:
    oid = object_id(binding_id)
    if oid is None:
        return None
    return await db[COLLECTION].find_one_and_delete({"_id": oid, "openid": openid})


def binding_view(binding: dict[str, Any]) -> dict[str, Any]:
    verification = binding.get("verification") or {}
    return {
        "id": str(binding["_id"]),
        "name": binding["name"],
        "id_kind": binding["id_kind"],
        "id_number_masked": binding["id_masked"],
        "verified": bool(binding.get("verified")),
        "verification_method": verification.get("method") if binding.get("verified") else None,
        "verified_at": verification.get("at") if binding.get("verified") else None,
        "created_at": binding["created_at"],
    }
