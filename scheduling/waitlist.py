"""The waitlist of full slots.

A family waits on a full slot. When a seat of that slot frees (cancel, reject, expire, a capacity
increase, an offer that lapsed), the first waiting family gets a time-limited offer and the seat
is HELD for it: the release and the re-take happen in the same transaction, so the slot's
``booked`` count never shows the seat as free and a third family cannot take it. Accepting the
offer books with the held seat (``bookings.create_booking`` with ``waitlist_id``); an offer that
lapses passes the seat to the next family (job), or back to everyone when nobody waits.

Entry statuses: waiting → offered → accepted | lapsed; waiting → expired (the slot can no longer
be offered); waiting | offered → cancelled (the family leaves).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.db import declare_indexes, in_transaction
from bot.errors import ApiError, not_found
from bot.notify import outbox
from scheduling.booking_base import (
    SLOTS,
    Actor,
    Policy,
    audit,
    load_bookable,
    local,
    local_text,
    offer_until,
    take,
    update_and_get,
)

log = logging.getLogger(__name__)

COLLECTION = "waitlist"
WAITING, OFFERED, ACCEPTED, LAPSED, EXPIRED, CANCELLED = (
    "waiting", "offered", "accepted", "lapsed", "expired", "cancelled")
ACTIVE = (WAITING, OFFERED)
STATUS_LABELS = {WAITING: "排队中", OFFERED: "已为您保留名额", ACCEPTED: "已预约", LAPSED: "保留已过期",
                 EXPIRED: "已失效", CANCELLED: "已取消"}

declare_indexes(
    COLLECTION,
    IndexModel([("slot_id", ASCENDING), ("status", ASCENDING), ("created_at", ASCENDING)], name="slot_status_created"),
    IndexModel([("status", ASCENDING), ("offer_expires_at", ASCENDING)], name="status_offer_expires"),
    IndexModel([("openid", ASCENDING), ("created_at", ASCENDING)], name="openid_created"),
    # one active entry per family and slot: ``active_key`` exists only while waiting or offered
    IndexModel("active_key", unique=True, name="active_key_unique",
               partialFilterExpression={"active_key": {"$type": "string"}}),
)

ENTRY_NOT_FOUND = not_found("找不到该候补记录", "waitlist_not_found")
OFFER_GONE = ApiError(409, "offer_not_available", "该候补名额已失效或尚未轮到您")


async def join(db: AsyncDatabase, openid: str, slot_id: str, service_id: str, now: datetime | None = None
               ) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    slot, service, institution = await load_bookable(db, slot_id, service_id, now)
    if offer_until(slot) <= now:
        raise ApiError(409, "waitlist_closed", "该时段即将开始，已不能候补")
    if slot["booked"] < slot["capacity"]:
        raise ApiError(409, "slot_available", "该时段仍有名额，请直接预约")
    entry = {
        "_id": str(ObjectId()), "openid": openid, "slot_id": slot_id, "service_id": service_id,
        "institution_id": institution["_id"], "kind": institution["kind"], "start": slot["start"],
        "end": slot["end"], "offer_until": offer_until(slot), "service_name": service.get("name", ""),
        "institution_name": institution.get("name", ""), "status": WAITING, "active_key": f"{openid}|{slot_id}",
        "created_at": now, "updated_at": now, "offered_at": None, "offer_expires_at": None, "booking_id": None,
    }
    try:
        await db[COLLECTION].insert_one(entry)
    except DuplicateKeyError:
        raise ApiError(409, "already_waiting", "您已在该时段的候补名单中") from None
    return entry


async def list_for(db: AsyncDatabase, openid: str, limit: int = 50) -> list[dict[str, Any]]:
    entries = await db[COLLECTION].find({"openid": openid}).sort("created_at", -1).limit(limit).to_list(None)
    return [{**entry, "position": await position(db, entry)} for entry in entries]


async def get(db: AsyncDatabase, openid: str, entry_id: str) -> dict[str, Any]:
    entry = await db[COLLECTION].find_one({"_id": entry_id, "openid": openid})
    if entry is None:
        raise ENTRY_NOT_FOUND
    return entry


async def position(db: AsyncDatabase, entry: dict[str, Any]) -> int | None:
    """1 for the next family in line; None unless waiting."""
    if entry["status"] != WAITING:
        return None
    line = {"slot_id": entry["slot_id"], "status": WAITING}
    earlier = await db[COLLECTION].count_documents({**line, "created_at": {"$lt": entry["created_at"]}})
    same_moment = await db[COLLECTION].count_documents({**line, "created_at": entry["created_at"],
                                                        "_id": {"$lt": entry["_id"]}})
    return earlier + same_moment + 1


async def leave(db: AsyncDatabase, openid: str, entry_id: str, policy: Policy, now: datetime | None = None
                ) -> dict[str, Any]:
    """The family leaves the waitlist; a seat held for its offer passes on in the same step."""
    now = now or datetime.now(UTC)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        entry = await db[COLLECTION].find_one({"_id": entry_id, "openid": openid}, session=session)
        if entry is None:
            raise ENTRY_NOT_FOUND  # another family's entry is indistinguishable from none
        left = entry["status"] in ACTIVE and await update_and_get(
            db, COLLECTION, {"_id": entry_id, "status": entry["status"]},
            {"$set": {"status": CANCELLED, "updated_at": now}, "$unset": {"active_key": ""}}, session)
        if not left:
            raise ApiError(409, "waitlist_not_active", "该候补记录已结束")
        if entry["status"] == OFFERED:
            await release_seat(db, session, entry["slot_id"], policy, now)
        await audit(db, session, entity="waitlist", entity_id=entry_id, actor=Actor.resident(openid),
                    action="leave", source=entry["status"], target=CANCELLED, at=now)
        return {**entry, "status": CANCELLED}

    return await in_transaction(db.client, work)


async def claim_offer(
    db: AsyncDatabase, session: AsyncClientSession, entry_id: str, openid: str, slot_id: str, booking_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Inside the booking's transaction: turn the family's live offer into the booking's seat."""
    entry = await update_and_get(
        db, COLLECTION,
        {"_id": entry_id, "openid": openid, "slot_id": slot_id, "status": OFFERED, "offer_expires_at": {"$gt": now}},
        {"$set": {"status": ACCEPTED, "booking_id": booking_id, "updated_at": now}, "$unset": {"active_key": ""}},
        session)
    if entry is None:
        raise OFFER_GONE
    return entry


async def release_seat(
    db: AsyncDatabase, session: AsyncClientSession, slot_id: str, policy: Policy, now: datetime
) -> dict[str, Any] | None:
    """Give a seat of ``slot_id`` back, inside the caller's transaction; the first waiting family
    (if any, and if the slot has room) gets it held as an offer. Returns that entry."""
    result = await db[SLOTS].update_one({"_id": slot_id, "booked": {"$gt": 0}}, {"$inc": {"booked": -1}},
                                        session=session)
    if result.modified_count != 1:
        log.error("seat release found no booked seat", extra={"slot_id": slot_id})
        return None
    return await offer_next(db, session, slot_id, policy, now)


async def offer_next(
    db: AsyncDatabase, session: AsyncClientSession, slot_id: str, policy: Policy, now: datetime
) -> dict[str, Any] | None:
    """Hold a free seat of ``slot_id`` for the first waiting family, inside the caller's transaction."""
    slot = await db[SLOTS].find_one({"_id": slot_id}, session=session)
    if slot is None or slot.get("status") != "open":
        return None
    expires_at = min(now + policy.offer_window, offer_until(slot))
    if expires_at <= now:
        return None
    entry = await db[COLLECTION].find_one({"slot_id": slot_id, "status": WAITING},
                                          sort=[("created_at", ASCENDING), ("_id", ASCENDING)], session=session)
    if entry is None:
        return None
    if not await take(db, session, slot_id, seen=slot):
        return None  # no room (capacity was reduced below the bookings)
    offered = await update_and_get(
        db, COLLECTION, {"_id": entry["_id"], "status": WAITING},
        {"$set": {"status": OFFERED, "offered_at": now, "offer_expires_at": expires_at, "updated_at": now}},
        session)
    if offered is None:  # changed after our snapshot: a write conflict makes the transaction retry
        raise RuntimeError("waitlist entry changed during the offer")
    await outbox.enqueue(
        db, kind="waitlist_offer", openid=entry["openid"], key=f"waitlist_offer:{entry['_id']}", session=session,
        payload={"waitlist_id": entry["_id"], "service_name": entry["service_name"],
                 "institution_name": entry["institution_name"], "start_local": local_text(entry["start"]),
                 "offer_expires_local": local_text(expires_at)},
    )
    await audit(db, session, entity="waitlist", entity_id=entry["_id"], actor=Actor.system("waitlist"),
                action="offer", source=WAITING, target=OFFERED, at=now,
                details={"offer_expires_at": expires_at})
    return offered


async def expire_offers(db: AsyncDatabase, policy: Policy, now: datetime | None = None) -> int:
    """Job: offers not accepted in time lapse; their held seat passes to the next family."""
    now = now or datetime.now(UTC)
    lapsed = 0
    due = db[COLLECTION].find({"status": OFFERED, "offer_expires_at": {"$lte": now}}, {"_id": 1}).limit(500)
    async for entry in due:
        async def work(session: AsyncClientSession, entry_id: str = entry["_id"]) -> bool:
            entry = await update_and_get(
                db, COLLECTION, {"_id": entry_id, "status": OFFERED, "offer_expires_at": {"$lte": now}},
                {"$set": {"status": LAPSED, "updated_at": now}, "$unset": {"active_key": ""}}, session)
            if entry is None:
                return False  # accepted or left meanwhile
            await audit(db, session, entity="waitlist", entity_id=entry_id, actor=Actor.system("waitlist"),
                        action="lapse", source=OFFERED, target=LAPSED, at=now)
            await release_seat(db, session, entry["slot_id"], policy, now)
            return True

        lapsed += await in_transaction(db.client, work)
    return lapsed


async def offer_free_seats(db: AsyncDatabase, policy: Policy, now: datetime | None = None) -> int:
    """Job: offer seats that became free without a release (a capacity increase, a family that
    joined while a seat was being released), and close entries whose slot can no longer be offered."""
    now = now or datetime.now(UTC)
    await db[COLLECTION].update_many(
        {"status": WAITING, "offer_until": {"$lte": now}},
        {"$set": {"status": EXPIRED, "updated_at": now}, "$unset": {"active_key": ""}},
    )
    offered = 0
    for slot_id in await db[COLLECTION].distinct("slot_id", {"status": WAITING}):
        while True:
            async def work(session: AsyncClientSession, slot_id: str = slot_id) -> dict[str, Any] | None:
                return await offer_next(db, session, slot_id, policy, now)

            if await in_transaction(db.client, work) is None:
                break
            offered += 1
    return offered


def view(entry: dict[str, Any], position: int | None = None) -> dict[str, Any]:
    return {
        "id": entry["_id"], "status": entry["status"], "status_label": STATUS_LABELS.get(entry["status"], ""),
        "slot_id": entry["slot_id"], "service_id": entry["service_id"], "institution_id": entry["institution_id"],
        "service_name": entry.get("service_name", ""), "institution_name": entry.get("institution_name", ""),
        "start": local(entry["start"]), "end": local(entry["end"]), "position": position,
        "offer_expires_at": local(entry["offer_expires_at"]) if entry.get("offer_expires_at") else None,
        "booking_id": entry.get("booking_id"), "created_at": entry["created_at"],
    }
