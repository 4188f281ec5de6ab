"""The access log of residents' personal and settlement data (PIPL, 个人信息保护法): every staff
read of it, and every staff action on a resident's identity, is one entry — who, when, what, why.

Other code calls ``record`` (pass the transaction ``session`` when the read belongs to one). An
entry names its subject by the identity hash (an insured person, whoever bound them) and/or the
resident's account (``openid``); ``entries_for`` lists what a resident may see: entries about their
account and about the identities they verifiably bound. No plain ID number or name is stored here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.db import declare_indexes

COLLECTION = "access_log"

# what was read or done (the ``what`` of an entry) and how a resident reads it
SETTLEMENT_LOOKUP = "settlement_lookup"
SETTLEMENT_LOOKUP_UNMASKED = "settlement_lookup_unmasked"
COUNTER_BINDING = "counter_binding"
COUNTER_GRANT = "counter_grant"
COUNTER_GRANT_REVOKED = "counter_grant_revoked"
BOOKING_PERSONAL_DATA = "booking_personal_data"
WHAT_LABELS = {
    BOOKING_PERSONAL_DATA: "查看预约中的就诊人个人信息（未脱敏）",
    SETTLEMENT_LOOKUP: "查询结算记录（脱敏）",
    SETTLEMENT_LOOKUP_UNMASKED: "查询结算记录（含未脱敏个人信息）",
    COUNTER_BINDING: "窗口核验并绑定参保人",
    COUNTER_GRANT: "窗口登记亲情授权",
    COUNTER_GRANT_REVOKED: "窗口撤销亲情授权",
}

declare_indexes(
    COLLECTION,
    IndexModel([("id_hash", 1), ("at", DESCENDING)], name="identity_at"),
    IndexModel([("openid", 1), ("at", DESCENDING)], name="openid_at"),
)


async def record(
    db: AsyncDatabase,
    *,
    staff: str,
    role: str,
    what: str,
    why: str,
    id_hash: str | None = None,
    openid: str | None = None,
    target: dict[str, Any] | None = None,
    session: AsyncClientSession | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Write one entry. ``target`` says which records (``{"settlement_ids": [...]}``), never personal data."""
    if what not in WHAT_LABELS:
        raise ValueError(f"unknown access kind {what}")
    if id_hash is None and openid is None:
        raise ValueError("an access-log entry needs a subject")
    entry = {"_id": ObjectId(), "at": now or datetime.now(UTC), "staff": staff, "role": role, "what": what,
             "why": why, "id_hash": id_hash, "openid": openid, "target": target or {}}
    await db[COLLECTION].insert_one(entry, session=session)
    return entry


async def entries_for(
    db: AsyncDatabase, openid: str, id_hashes: list[str], limit: int = 50
) -> list[dict[str, Any]]:
    subjects: list[dict[str, Any]] = [{"openid": openid}]
    if id_hashes:
        subjects.append({"id_hash": {"$in": id_hashes}})
    cursor = db[COLLECTION].find({"$or": subjects}).sort([("at", DESCENDING), ("_id", DESCENDING)])
    return await cursor.limit(limit).to_list()


def entry_view(entry: dict[str, Any], staff_names: dict[str, str] | None = None) -> dict[str, Any]:
    names = staff_names or {}
    return {
        "id": str(entry["_id"]),
        "at": entry["at"],
        "staff": entry["staff"],
        "staff_name": names.get(entry["staff"]) or None,
        "role": entry["role"],
        "what": entry["what"],
        "what_label": WHAT_LABELS.get(entry["what"], entry["what"]),
        "why": entry["why"],
        "settlement_ids": list((entry.get("target") or {}).get("settlement_ids", [])),
        "booking_ids": list((entry.get("target") or {}).get("booking_ids", [])),
    }
