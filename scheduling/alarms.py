"""One-key alarm (一键报警) of a nurse on a home visit: the record, the duty roster, escalation,
acknowledgement and resolution. Sending is ``bot.notify.alarms`` (the layer that may call WeChat).

An alarm can never be lost: ``record_alarm`` writes the alarm and one delivery item per on-duty
recipient in one transaction, *before* anything is sent. The caller then sends at once
(``bot.notify.alarms.raise_alarm``); the ``alarms`` job is the safety net that sends whatever is
still pending (a crash between the write and the send, a WeChat failure) and escalates.

Duty roster (``duty_roster``): per institution, staff accounts (or a desk such as the hospital's
security office) with a WeChat openid to message, ``on_duty`` and a ``level``: level 0 is the
clinic's duty staff, told at once; level 1, 2 … are the next contacts, told when the alarm is
still unacknowledged ``escalation`` minutes after the previous level was told.

Deliveries (``alarm_deliveries``, ``_id`` = alarm|level|recipient, so each is created once) are
claimed with a lease (``pending`` → ``sending``), so the immediate send and the job never send the
same item at the same moment; a claim whose holder died is taken over when its lease ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts.staff import ADMIN, CLINIC_STAFF, StaffMember
from bot.db import declare_indexes, in_transaction
from bot.errors import ApiError, bad_request, not_found
from bot.masking import mask_phone
from scheduling import geo
from scheduling.booking_base import Actor, audit, local_text
from scheduling.visits import VISITS, assigned_booking

ALARMS, DELIVERIES, ROSTER = "alarms", "alarm_deliveries", "duty_roster"
OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
STATUS_LABELS = {OPEN: "待响应", ACKNOWLEDGED: "已响应", RESOLVED: "已处置"}
LEASE = timedelta(seconds=30)
MAX_ATTEMPTS = 10

declare_indexes(
    ALARMS,
    IndexModel([("status", ASCENDING), ("next_escalation_at", ASCENDING)], name="status_escalation"),
    IndexModel([("institution_id", ASCENDING), ("raised_at", ASCENDING)], name="institution_raised"),
)
declare_indexes(
    DELIVERIES,
    IndexModel([("status", ASCENDING), ("due_at", ASCENDING)], name="status_due"),
    IndexModel("alarm_id", name="alarm"),
)
declare_indexes(ROSTER, IndexModel([("institution_id", ASCENDING), ("level", ASCENDING), ("on_duty", ASCENDING)],
                                   name="institution_level_duty"))

ALARM_NOT_FOUND = not_found("找不到该报警", "alarm_not_found")
RESPONDERS = frozenset({ADMIN, CLINIC_STAFF})


# ---------------------------------------------------------------- duty roster


async def set_roster_entry(db: AsyncDatabase, institution_id: str, contact: str, *, openid: str, on_duty: bool,
                           level: int = 0, name: str = "", phone: str = "") -> dict[str, Any]:
    """Put a contact (a staff username, or a desk such as ``security-desk``) on the roster."""
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5:
        raise bad_request("invalid_level", "level 应为 0 到 5 的整数（0 为值班人员，1 起为逐级上报对象）")
    if not isinstance(openid, str) or not 1 <= len(openid) <= 64:
        raise bad_request("invalid_openid", "请提供接收报警的微信 openid")
    entry = {"_id": f"{institution_id}|{contact}", "institution_id": institution_id, "contact": contact,
             "openid": openid, "on_duty": bool(on_duty), "level": level, "name": name, "phone": phone,
             "updated_at": datetime.now(UTC)}
    await db[ROSTER].replace_one({"_id": entry["_id"]}, entry, upsert=True)
    return entry


async def roster(db: AsyncDatabase, institution_id: str) -> list[dict[str, Any]]:
    return await db[ROSTER].find({"institution_id": institution_id}).sort(
        [("level", ASCENDING), ("_id", ASCENDING)]).to_list(None)


async def _recipients(db: AsyncDatabase, institution_id: str, level: int,
                      session: AsyncClientSession | None = None) -> list[dict[str, Any]]:
    return await db[ROSTER].find({"institution_id": institution_id, "level": level, "on_duty": True},
                                 session=session).to_list(None)


async def _deliveries_for(db: AsyncDatabase, session: AsyncClientSession, alarm: dict[str, Any], level: int,
                          now: datetime) -> int:
    recipients = await _recipients(db, alarm["institution_id"], level, session)
    for entry in recipients:
        await db[DELIVERIES].update_one(
            {"_id": f"{alarm['_id']}|{level}|{entry['contact']}"},
            {"$setOnInsert": {"alarm_id": alarm["_id"], "level": level, "contact": entry["contact"],
                              "openid": entry["openid"], "status": PENDING, "due_at": now, "attempts": 0,
                              "last_error": None, "created_at": now}},
            upsert=True, session=session)
    return len(recipients)


# ---------------------------------------------------------------- raising


def alarm_text(alarm: dict[str, Any]) -> str:
    """The message the duty staff read (Chinese; the patient's phone masked)."""
    where = alarm.get("address") or {}
    location = alarm.get("location")
    place = f"{where.get('district', '')}{where.get('street', '')}{where.get('detail', '')}"
    coordinates = (f"；最后位置 {location['latitude']:.5f},{location['longitude']:.5f}"
                   f"（{local_text(location['at'])}）" if location and location.get("at") else "")
    escalated = f"【第 {alarm['level']} 级上报】" if alarm.get("level") else ""
    note = f"；说明：{alarm['note']}" if alarm.get("note") else ""
    return (f"【一键报警】{escalated}护士{alarm.get('nurse_name', '')}在上门服务中报警，请立即处置。"
            f"服务：{alarm.get('service_name', '')}（{local_text(alarm['visit_start'])}）；地址：{place}"
            f"{coordinates}{note}；报警编号 {alarm['_id']}。请在工作台确认响应。")


async def record_alarm(db: AsyncDatabase, member: StaffMember, booking_id: str, *, location: Any = None,
                       note: Any = None, escalation: timedelta, now: datetime | None = None) -> dict[str, Any]:
    """Write the alarm and its level-0 deliveries (one transaction). Nothing is sent here."""
    now = now or datetime.now(UTC)
    device = geo.parse_location(location, required=False)
    if note is not None and (not isinstance(note, str) or len(note) > 200):
        raise bad_request("invalid_note", "说明应为不超过 200 字的文字")

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = await assigned_booking(db, member, booking_id, session)
        visit = await db[VISITS].find_one({"_id": booking_id}, session=session) or {}
        last = {"at": now, **device} if device else visit.get("last_location")
        patient = booking.get("patient") or {}
        alarm = {"_id": str(ObjectId()), "booking_id": booking_id, "institution_id": booking["institution_id"],
                 "nurse_id": booking.get("nurse_id"), "nurse_name": (booking.get("nurse") or {}).get("name", ""),
                 "raised_by": member.username, "raised_at": now, "note": note.strip() if note else None,
                 "service_name": booking.get("service_name", ""), "visit_start": booking["start"],
                 "address": booking.get("address"), "location": last,
                 "patient": {"name": patient.get("name"), "phone_masked": mask_phone(patient.get("phone"))},
                 "status": OPEN, "level": 0, "next_escalation_at": now + escalation,
                 "escalations": [], "acknowledged": None, "resolved": None}
        await db[ALARMS].insert_one(alarm, session=session)
        told = await _deliveries_for(db, session, alarm, 0, now)
        await audit(db, session, entity="alarm", entity_id=alarm["_id"], actor=Actor.staff(member), action="raise",
                    source=None, target=OPEN, at=now, details={"booking_id": booking_id, "recipients": told})
        return alarm

    return await in_transaction(db.client, work)


# ---------------------------------------------------------------- deliveries


async def claim_deliveries(db: AsyncDatabase, holder: str, *, alarm_id: str | None = None,
                           now: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Claim due deliveries (pending, or sending with a lapsed lease) for ``holder``."""
    now = now or datetime.now(UTC)
    query: dict[str, Any] = {"status": {"$in": [PENDING, SENDING]}}
    if alarm_id is not None:
        query["alarm_id"] = alarm_id
    claimed = []
    async for candidate in db[DELIVERIES].find(query).limit(limit):
        lapsed = candidate["status"] == SENDING and candidate.get("lease_until") and candidate["lease_until"] <= now
        due = candidate["status"] == PENDING and candidate["due_at"] <= now
        if not (lapsed or due):
            continue
        condition = {"_id": candidate["_id"], "status": candidate["status"]}
        if candidate["status"] == SENDING:
            condition["lease_until"] = candidate["lease_until"]
        result = await db[DELIVERIES].update_one(condition, {"$set": {
            "status": SENDING, "lease_until": now + LEASE, "claimed_by": holder}})
        if result.modified_count == 1:
            claimed.append({**candidate, "status": SENDING, "claimed_by": holder})
    return claimed


async def finish_delivery(db: AsyncDatabase, delivery: dict[str, Any], *, error: str | None, retry: bool,
                          now: datetime | None = None) -> None:
    """Mark a claimed delivery sent, failed, or due again (transient error, with a short back-off)."""
    now = now or datetime.now(UTC)
    attempts = delivery.get("attempts", 0) + 1
    if error is None:
        update = {"status": SENT, "sent_at": now, "attempts": attempts}
    elif retry and attempts < MAX_ATTEMPTS:
        update = {"status": PENDING, "due_at": now + timedelta(seconds=min(60, 2 ** attempts)), "attempts": attempts,
                  "last_error": error}
    else:
        update = {"status": FAILED, "attempts": attempts, "last_error": error, "failed_at": now}
    await db[DELIVERIES].update_one({"_id": delivery["_id"], "status": SENDING, "claimed_by": delivery["claimed_by"]},
                                    {"$set": update, "$unset": {"lease_until": ""}})


async def get_alarm(db: AsyncDatabase, alarm_id: str) -> dict[str, Any] | None:
    return await db[ALARMS].find_one({"_id": alarm_id}) if isinstance(alarm_id, str) else None


# ---------------------------------------------------------------- escalation


async def escalate_due(db: AsyncDatabase, escalation: timedelta, now: datetime | None = None) -> int:
    """Alarms still unacknowledged at ``next_escalation_at`` go to the next level of the roster.
    With no further level on the roster the last level is told again, so nobody is left unwarned."""
    now = now or datetime.now(UTC)
    escalated = 0
    async for alarm in db[ALARMS].find({"status": OPEN, "next_escalation_at": {"$lte": now}}).limit(200):
        async def work(session: AsyncClientSession, alarm: dict[str, Any] = alarm) -> bool:
            level = alarm["level"] + 1
            has_level = bool(await _recipients(db, alarm["institution_id"], level, session))
            target = level if has_level else alarm["level"]
            result = await db[ALARMS].update_one(
                {"_id": alarm["_id"], "status": OPEN, "level": alarm["level"],
                 "next_escalation_at": alarm["next_escalation_at"]},
                {"$set": {"level": target, "next_escalation_at": now + escalation},
                 "$push": {"escalations": {"at": now, "level": target, "repeated": not has_level}}},
                session=session)
            if result.modified_count != 1:
                return False
            if has_level:
                await _deliveries_for(db, session, {**alarm, "level": target}, target, now)
            else:  # tell the last level again: new delivery items, keyed by the repetition
                for entry in await _recipients(db, alarm["institution_id"], target, session):
                    await db[DELIVERIES].update_one(
                        {"_id": f"{alarm['_id']}|{target}|{entry['contact']}|{len(alarm['escalations'])}"},
                        {"$setOnInsert": {"alarm_id": alarm["_id"], "level": target, "contact": entry["contact"],
                                          "openid": entry["openid"], "status": PENDING, "due_at": now,
                                          "attempts": 0, "last_error": None, "created_at": now}},
                        upsert=True, session=session)
            await audit(db, session, entity="alarm", entity_id=alarm["_id"], actor=Actor.system("alarms"),
                        action="escalate", source=OPEN, target=OPEN, at=now, details={"level": target})
            return True

        if await in_transaction(db.client, work):
            escalated += 1
    return escalated


# ---------------------------------------------------------------- response


def _responder(member: StaffMember, alarm: dict[str, Any]) -> None:
    if member.role not in RESPONDERS or not member.may_act_for(alarm["institution_id"]):
        raise ApiError(403, "forbidden", "只有本机构的工作人员可以响应报警")


async def acknowledge(db: AsyncDatabase, member: StaffMember, alarm_id: str, *, note: str | None = None,
                      now: datetime | None = None) -> dict[str, Any]:
    """Duty staff take the alarm: escalation stops."""
    now = now or datetime.now(UTC)
    alarm = await get_alarm(db, alarm_id)
    if alarm is None:
        raise ALARM_NOT_FOUND
    _responder(member, alarm)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        result = await db[ALARMS].update_one({"_id": alarm_id, "status": OPEN}, {"$set": {
            "status": ACKNOWLEDGED, "acknowledged": {"at": now, "by": member.username, "note": note},
            "next_escalation_at": None}}, session=session)
        if result.modified_count != 1:
            raise ApiError(409, "alarm_not_open", "该报警已被响应或已处置")
        await audit(db, session, entity="alarm", entity_id=alarm_id, actor=Actor.staff(member), action="acknowledge",
                    source=OPEN, target=ACKNOWLEDGED, at=now, reason=note)
        return await db[ALARMS].find_one({"_id": alarm_id}, session=session)

    return await in_transaction(db.client, work)


async def resolve(db: AsyncDatabase, member: StaffMember, alarm_id: str, *, resolution: str,
                  now: datetime | None = None) -> dict[str, Any]:
    """Record how the alarm was dealt with (an unacknowledged alarm is acknowledged by it too)."""
    now = now or datetime.now(UTC)
    if not isinstance(resolution, str) or not 1 <= len(resolution.strip()) <= 500:
        raise bad_request("resolution_required", "请填写处置结果（不超过 500 字）")
    alarm = await get_alarm(db, alarm_id)
    if alarm is None:
        raise ALARM_NOT_FOUND
    _responder(member, alarm)

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        current = await db[ALARMS].find_one({"_id": alarm_id}, session=session)
        if current["status"] == RESOLVED:
            raise ApiError(409, "alarm_resolved", "该报警已处置")
        changes: dict[str, Any] = {"status": RESOLVED, "next_escalation_at": None,
                                   "resolved": {"at": now, "by": member.username, "resolution": resolution.strip()}}
        if current.get("acknowledged") is None:
            changes["acknowledged"] = {"at": now, "by": member.username, "note": None}
        result = await db[ALARMS].update_one({"_id": alarm_id, "status": current["status"]}, {"$set": changes},
                                             session=session)
        if result.modified_count != 1:
            raise ApiError(409, "alarm_changed", "报警状态刚刚发生了变化，请刷新后重试")
        await audit(db, session, entity="alarm", entity_id=alarm_id, actor=Actor.staff(member), action="resolve",
                    source=current["status"], target=RESOLVED, at=now, reason=resolution.strip())
        return await db[ALARMS].find_one({"_id": alarm_id}, session=session)

    return await in_transaction(db.client, work)


async def list_alarms(db: AsyncDatabase, institution_id: str | None, *, status: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    query: dict[str, Any] = {}
    if institution_id is not None:
        query["institution_id"] = institution_id
    if status:
        query["status"] = status
    return await db[ALARMS].find(query).sort("raised_at", -1).limit(limit).to_list(None)


async def deliveries(db: AsyncDatabase, alarm_id: str) -> list[dict[str, Any]]:
    return await db[DELIVERIES].find({"alarm_id": alarm_id}).sort("_id", ASCENDING).to_list(None)


def alarm_view(alarm: dict[str, Any], delivered: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {"id": alarm["_id"], "booking_id": alarm["booking_id"], "institution_id": alarm["institution_id"],
           "nurse_id": alarm.get("nurse_id"), "nurse_name": alarm.get("nurse_name"), "raised_at": alarm["raised_at"],
           "note": alarm.get("note"), "service_name": alarm.get("service_name"), "visit_start": alarm["visit_start"],
           "address": alarm.get("address"), "location": alarm.get("location"), "patient": alarm.get("patient"),
           "status": alarm["status"], "status_label": STATUS_LABELS.get(alarm["status"], alarm["status"]),
           "level": alarm["level"], "next_escalation_at": alarm.get("next_escalation_at"),
           "escalations": alarm.get("escalations", []), "acknowledged": alarm.get("acknowledged"),
           "resolved": alarm.get("resolved"), "text": alarm_text(alarm)}
    if delivered is not None:
        out["deliveries"] = [{"contact": d["contact"], "level": d["level"], "status": d["status"],
                              "sent_at": d.get("sent_at"), "last_error": d.get("last_error")} for d in delivered]
    return out
