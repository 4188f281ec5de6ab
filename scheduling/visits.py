"""The nurse's home visit, step by step (全程留痕): departure and arrival with the device's location,
the patient's identity check, and location pings while in service.

Only the assigned nurse's own account acts here: a staff account of role ``nurse`` whose
``nurse_id`` is the booking's nurse (``bot.accounts.staff``). Every step is recorded in the visit
document (``visits``, ``_id`` = booking id) together with an audit record in the same transaction.

- Arrival is accepted when the device is within ``radius_m`` of the address's map point (the point
  the family chose with ``wx.chooseLocation``); farther away, or when the address has no point,
  the nurse must state why (``reason``), and the arrival is recorded as outside the radius.
- The identity check records the method (last four digits of the ID number, or name and age) and
  whether it matched, never the digits typed.
- Pings (``visit_pings``) carry ``expires_at``; a TTL index deletes them after the retention.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts.staff import NURSE, StaffMember
from bot.db import declare_indexes, in_transaction
from bot.errors import ApiError, bad_request, not_found
from scheduling import bookings, geo
from scheduling import transitions as t
from scheduling.booking_base import AUDIT, BOOKINGS, Actor, Policy, audit

VISITS, PINGS = "visits", "visit_pings"

declare_indexes(VISITS, IndexModel([("institution_id", ASCENDING), ("updated_at", ASCENDING)],
                                   name="institution_updated"))
declare_indexes(
    PINGS,
    IndexModel([("booking_id", ASCENDING), ("at", ASCENDING)], name="booking_at"),
    # deleted by the server once expires_at has passed (the retention is chosen per write)
    IndexModel("expires_at", expireAfterSeconds=0, name="expires_ttl"),
)

VISIT_NOT_FOUND = not_found("找不到该上门服务", "visit_not_found")
NOT_ASSIGNED_NURSE = ApiError(403, "not_assigned_nurse", "只有被指派的护士本人账号可以操作此上门服务")
ARRIVAL_STATUSES = frozenset({t.ON_THE_WAY, t.IN_SERVICE})
PING_STATUSES = frozenset({t.ON_THE_WAY, t.IN_SERVICE})
ID_LAST4, NAME_AGE = "id_last4", "name_age"


def nurse_may_act(member: StaffMember, booking: dict[str, Any]) -> bool:
    return member.role == NURSE and bool(member.nurse_id) and booking.get("nurse_id") == member.nurse_id


async def assigned_booking(db: AsyncDatabase, member: StaffMember, booking_id: str,
                           session: AsyncClientSession | None = None) -> dict[str, Any]:
    """The nursing booking ``booking_id`` if ``member`` is its assigned nurse: 404 / 403 otherwise."""
    booking = await db[BOOKINGS].find_one({"_id": booking_id}, session=session) if isinstance(
        booking_id, str) else None
    if booking is None or booking.get("kind") != t.NURSING:
        raise VISIT_NOT_FOUND
    if not nurse_may_act(member, booking):
        raise NOT_ASSIGNED_NURSE
    return booking


def arrival_decision(address: dict[str, Any] | None, device: dict[str, float], radius_m: int,
                     reason: str | None) -> dict[str, Any]:
    """Pure: is the arrival within the radius, and if not, is there a reason? Raises when refused."""
    target = (address or {}).get("location")
    distance = round(geo.distance_m(target, device), 1) if target else None
    within = distance is not None and distance <= radius_m
    if not within and not reason:
        if distance is None:
            raise ApiError(409, "arrival_reason_required", "该地址没有地图位置，无法核对到达位置，请填写说明（reason）")
        raise ApiError(409, "arrival_outside_radius",
                       f"当前位置距服务地址约 {distance:.0f} 米，超出 {radius_m} 米，请填写说明（reason）",
                       distance_m=distance, radius_m=radius_m)
    return {"distance_m": distance, "radius_m": radius_m, "within_radius": within,
            "reason": None if within else reason}


def _clean_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason.strip()) > 200:
        raise bad_request("invalid_reason", "说明应为不超过 200 字的文字")
    return reason.strip() or None


async def _record_step(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], member: StaffMember,
                       update: dict[str, Any], condition: dict[str, Any], action: str, now: datetime,
                       details: dict[str, Any]) -> dict[str, Any] | None:
    base = {"institution_id": booking["institution_id"], "nurse_id": booking.get("nurse_id"),
            "openid": booking["openid"], "created_at": now}
    update.setdefault("$set", {})["updated_at"] = now
    update["$setOnInsert"] = base
    result = await db[VISITS].update_one({"_id": booking["_id"], **condition}, update, upsert=not condition,
                                         session=session)
    if condition and result.matched_count != 1:
        return None
    await audit(db, session, entity="visit", entity_id=booking["_id"], actor=Actor.staff(member), action=action,
                source=booking["status"], target=booking["status"], at=now, details=details)
    return await db[VISITS].find_one({"_id": booking["_id"]}, session=session)


async def start_trip(db: AsyncDatabase, member: StaffMember, booking_id: str, location: Any, policy: Policy,
                     now: datetime | None = None) -> dict[str, Any]:
    """The nurse leaves for the visit (出发): the booking moves to on-the-way (the transition table
    decides) and the departure time and place are recorded — from then on the visit fee is due."""
    now = now or datetime.now(UTC)
    device = geo.parse_location(location)
    booking = await assigned_booking(db, member, booking_id)
    booking = await bookings.transition(db, booking_id, t.ON_THE_WAY, Actor.staff(member), policy, now=now)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        visit = await _record_step(db, session, booking, member, {"$set": {
            "departure": {"at": now, "location": device, "by": member.username},
            "last_location": {"at": now, **device}}}, {}, "start_trip", now, {})
        assert visit is not None
        return visit

    return await in_transaction(db.client, work)


async def arrive(db: AsyncDatabase, member: StaffMember, booking_id: str, location: Any, *, radius_m: int,
                 reason: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """Record the nurse's arrival at the patient's home (once)."""
    now = now or datetime.now(UTC)
    device = geo.parse_location(location)
    reason = _clean_reason(reason)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = await assigned_booking(db, member, booking_id, session)
        if booking["status"] not in ARRIVAL_STATUSES:
            raise ApiError(409, "visit_not_on_the_way", "请先点击「出发」，再确认到达")
        decision = arrival_decision(booking.get("address"), device, radius_m, reason)
        await db[VISITS].update_one({"_id": booking_id}, {"$setOnInsert": {
            "institution_id": booking["institution_id"], "nurse_id": booking.get("nurse_id"),
            "openid": booking["openid"], "created_at": now, "updated_at": now}}, upsert=True, session=session)
        arrival = {"at": now, "location": device, **decision, "by": member.username}
        visit = await _record_step(db, session, booking, member, {"$set": {"arrival": arrival, "last_location": {
            "at": now, **device}}}, {"arrival": None}, "arrive", now,
            {"distance_m": decision["distance_m"], "within_radius": decision["within_radius"]})
        if visit is None:
            raise ApiError(409, "already_arrived", "已记录到达，无需重复操作")
        return visit

    return await in_transaction(db.client, work)


def identity_matches(patient: dict[str, Any] | None, method: str, *, id_last4: Any = None, name: Any = None,
                     age: Any = None) -> bool:
    """Pure: does what the nurse confirmed match the patient of the booking?"""
    patient = patient or {}
    if method == ID_LAST4:
        number = patient.get("id_number") or ""
        return (isinstance(id_last4, str) and len(number) >= 4 and len(id_last4) == 4
                and number[-4:].upper() == id_last4.strip().upper())
    if method == NAME_AGE:
        return (isinstance(name, str) and name.strip() == (patient.get("name") or "").strip() and name.strip() != ""
                and isinstance(age, int) and not isinstance(age, bool) and age == patient.get("age"))
    raise bad_request("invalid_method", "核对方式应为 id_last4（身份证后四位）或 name_age（姓名和年龄）")


async def check_identity(db: AsyncDatabase, member: StaffMember, booking_id: str, method: str, *,
                         id_last4: Any = None, name: Any = None, age: Any = None,
                         now: datetime | None = None) -> dict[str, Any]:
    """Record an identity check on arrival (every attempt is kept; the last one is ``identity``)."""
    now = now or datetime.now(UTC)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = await assigned_booking(db, member, booking_id, session)
        visit = await db[VISITS].find_one({"_id": booking_id}, session=session)
        if visit is None or not visit.get("arrival"):
            raise ApiError(409, "not_arrived", "请先确认到达，再核对患者身份")
        if method == ID_LAST4 and not (booking.get("patient") or {}).get("id_number"):
            raise ApiError(409, "no_id_number", "该患者未登记身份证号，请改用姓名和年龄核对")
        matched = identity_matches(booking.get("patient"), method, id_last4=id_last4, name=name, age=age)
        check = {"at": now, "method": method, "matched": matched, "by": member.username}
        stored = await _record_step(db, session, booking, member, {"$set": {"identity": check},
                                                                    "$push": {"identity_checks": check}},
                                    {}, "identity_check", now, {"method": method, "matched": matched})
        assert stored is not None
        return stored

    return await in_transaction(db.client, work)


async def ping(db: AsyncDatabase, member: StaffMember, booking_id: str, location: Any, *, retention: timedelta,
               now: datetime | None = None) -> dict[str, Any]:
    """Store one location ping of the nurse during the visit; deleted after ``retention``."""
    now = now or datetime.now(UTC)
    device = geo.parse_location(location)
    booking = await assigned_booking(db, member, booking_id)
    if booking["status"] not in PING_STATUSES:
        raise ApiError(409, "visit_not_in_progress", "上门服务未在进行中，无需上报位置")
    document = {"_id": str(ObjectId()), "booking_id": booking_id, "nurse_id": booking.get("nurse_id"),
                "institution_id": booking["institution_id"], "at": now, "location": device,
                "expires_at": now + retention}
    await db[PINGS].insert_one(document)
    await db[VISITS].update_one({"_id": booking_id}, {"$set": {"last_location": {"at": now, **device},
                                                               "updated_at": now},
                                                      "$setOnInsert": {"institution_id": booking["institution_id"],
                                                                       "nurse_id": booking.get("nurse_id"),
                                                                       "openid": booking["openid"],
                                                                       "created_at": now}}, upsert=True)
    return document


async def get_visit(db: AsyncDatabase, booking_id: str) -> dict[str, Any] | None:
    return await db[VISITS].find_one({"_id": booking_id})


async def pings(db: AsyncDatabase, booking_id: str, limit: int = 500) -> list[dict[str, Any]]:
    return await db[PINGS].find({"booking_id": booking_id}).sort("at", ASCENDING).limit(limit).to_list(None)


async def trail(db: AsyncDatabase, booking_id: str) -> list[dict[str, Any]]:
    """The visit's audit records (arrival, identity checks …) in order."""
    return await db[AUDIT].find({"entity": "visit", "entity_id": booking_id}).sort("at", ASCENDING).to_list(None)


def visit_view(visit: dict[str, Any] | None, *, for_staff: bool) -> dict[str, Any]:
    """The API form; the family sees the steps, not the nurse's coordinates."""
    if visit is None:
        return {"departure": None, "arrival": None, "identity": None, "last_location": None}
    arrival = visit.get("arrival")
    if arrival and not for_staff:
        arrival = {k: arrival[k] for k in ("at", "within_radius")}
    identity = visit.get("identity")
    departure = visit.get("departure")
    if departure and not for_staff:
        departure = {"at": departure["at"]}
    return {"departure": departure, "arrival": arrival,
            "identity": identity and {k: identity[k] for k in ("at", "method", "matched")},
            "last_location": visit.get("last_location") if for_staff else None,
            **({"identity_checks": visit.get("identity_checks", [])} if for_staff else {})}
