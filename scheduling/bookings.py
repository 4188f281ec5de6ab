"""Bookings: create, change status, reschedule. Each change is one database transaction that holds
the booking write, the slot seat, the family's quota, the nurse's time, the audit record and the
family's notifications together: it all happens, or none of it.

Capacity is enforced by the database, never by check-then-insert:
- a slot seat is taken by a conditional ``$inc`` (``booked < capacity``) and given back only by
  the transaction whose conditional status update matched, so exactly once;
- the family's active bookings are a counter document with a conditional ``$inc``;
- a nurse's time is a set of 15-minute buckets under a unique index (``nurse_assignments``);
- ``Idempotency-Key`` is a unique index on (openid, idempotency_key): a retried or concurrent
  duplicate loses the insert, waits for the winner to commit and returns the winner's booking.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from prometheus_client import Counter
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from bot.db import declare_indexes, in_transaction
from bot.errors import ApiError, bad_request, not_found
from bot.masking import mask_id_number, mask_phone
from bot.notify import outbox
from scheduling import assessment, patients, waitlist
from scheduling import consent as consent_texts  # issue 16: informed consent
from scheduling import credentials as nurse_credentials  # issue 16: nurse licence and insurance
from scheduling import transitions as t
from scheduling.booking_base import (
    AUDIT,
    BOOKINGS,
    DEFAULT_CANCEL_HOURS,
    DEFAULT_REVIEW_HOURS,
    NURSES,
    REVIEW_LEAD,
    SLOT_FULL,
    SLOT_QUEUE,
    SLOTS,
    Actor,
    Policy,
    api_error,
    audit,
    load_bookable,
    local,
    notification_payload,
    take,
    update_and_get,
)

log = logging.getLogger(__name__)

QUOTAS = "booking_quotas"
ASSIGNMENTS = "nurse_assignments"
BUCKET = timedelta(minutes=15)
REMINDERS = {"24h": timedelta(hours=24), "2h": timedelta(hours=2)}
# statuses in which the family is still waiting for the visit, so reminders are pending
_REMINDED = frozenset({t.BOOKED, t.CONFIRMED})

declare_indexes(
    BOOKINGS,
    IndexModel([("openid", ASCENDING), ("idempotency_key", ASCENDING)], unique=True, name="openid_idempotency_key"),
    IndexModel([("openid", ASCENDING), ("start", DESCENDING)], name="openid_start"),
    IndexModel([("institution_id", ASCENDING), ("date", ASCENDING), ("status", ASCENDING)],
               name="institution_date_status"),
    IndexModel([("nurse_id", ASCENDING), ("start", ASCENDING)], name="nurse_start"),
    IndexModel([("status", ASCENDING), ("review_deadline", ASCENDING)], name="status_review_deadline"),
)
declare_indexes(
    ASSIGNMENTS,
    IndexModel([("nurse_id", ASCENDING), ("bucket", ASCENDING)], unique=True, name="nurse_bucket_unique"),
    IndexModel("booking_id", name="booking"),
)

BOOKINGS_CREATED = Counter("bookings_created_total", "Bookings created, by kind", ["kind"])
BOOKING_TRANSITIONS = Counter("booking_transitions_total", "Booking status changes", ["kind", "source", "target"])
BOOKINGS_REFUSED = Counter("bookings_refused_total", "Booking creates refused, by error code", ["code"])

BOOKING_NOT_FOUND = not_found("找不到该预约", "booking_not_found")
FORBIDDEN = ApiError(403, "forbidden", "没有权限执行此操作")
CHANGED_MEANWHILE = ApiError(409, "booking_changed", "预约刚刚发生了变化，请刷新后重试")
NURSE_BUSY = ApiError(409, "nurse_busy", "该护士在此时段已有其他上门服务")
IDEMPOTENCY_KEY_REUSED = ApiError(422, "idempotency_key_reused", "该 Idempotency-Key 已用于另一笔不同的预约请求")
IDEMPOTENCY_IN_PROGRESS = ApiError(409, "idempotency_key_in_progress", "相同请求正在处理中，请稍后重试")


class _KeyTakenError(Exception):
    """Another request with the same Idempotency-Key inserted its booking first."""


@dataclass(frozen=True)
class BookingRequest:
    slot_id: str
    service_id: str
    idempotency_key: str
    patient_id: str | None = None
    address: dict[str, Any] | None = None
    assessment: dict[str, Any] | None = None
    waitlist_id: str | None = None
    note: str | None = None
    consent_version: int | None = None  # issue 16: the consent version the family accepted

    def fingerprint(self) -> str:
        """Identifies the request, so a key reused for a different request is refused."""
        material = [self.slot_id, self.service_id, self.patient_id, self.address, self.assessment, self.waitlist_id]
        return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---------------------------------------------------------------- create


async def create_booking(
    db: AsyncDatabase, openid: str, request: BookingRequest, policy: Policy, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """The booking and whether it is new (False: the first booking made with this key)."""
    now = now or datetime.now(UTC)
    first = await _first_with_key(db, openid, request)
    if first is not None:
        return first, False
    try:
        slot, service, institution = await load_bookable(db, request.slot_id, request.service_id, now)
        booking = await _new_booking(db, openid, request, slot, service, institution, now)
    except ApiError as exc:
        BOOKINGS_REFUSED.labels(exc.code).inc()
        raise
    if not request.waitlist_id and slot["booked"] >= slot["capacity"]:
        # An early answer only; the seat is still taken by the conditional update in the transaction.
        BOOKINGS_REFUSED.labels(SLOT_FULL.code).inc()
        raise SLOT_FULL

    async def work(session: AsyncClientSession) -> None:
        await _insert_new(db, session, booking, slot, request.waitlist_id, policy, now)

    for attempt in range(50):
        try:
            async with SLOT_QUEUE.turn(booking["slot_id"], policy.queue_per_slot and not request.waitlist_id):
                await in_transaction(db.client, work)
        except _KeyTakenError:
            # The winner may not have committed yet (or may have failed): look, wait a little, retry.
            first = await _first_with_key(db, openid, request)
            if first is not None:
                return first, False
            await asyncio.sleep(min(0.005 * (attempt + 1), 0.1))
            continue
        except ApiError as exc:
            BOOKINGS_REFUSED.labels(exc.code).inc()
            raise
        BOOKINGS_CREATED.labels(booking["kind"]).inc()
        log.info("booking created", extra={"booking_id": booking["_id"], "kind": booking["kind"],
                                           "slot_id": booking["slot_id"]})
        return booking, True
    raise IDEMPOTENCY_IN_PROGRESS


async def _first_with_key(db: AsyncDatabase, openid: str, request: BookingRequest) -> dict[str, Any] | None:
    first = await db[BOOKINGS].find_one({"openid": openid, "idempotency_key": request.idempotency_key})
    if first is not None and first.get("fingerprint") != request.fingerprint():
        raise IDEMPOTENCY_KEY_REUSED
    return first


async def _new_booking(
    db: AsyncDatabase, openid: str, request: BookingRequest, slot: dict[str, Any], service: dict[str, Any],
    institution: dict[str, Any], now: datetime,
) -> dict[str, Any]:
    kind = institution["kind"]
    booking: dict[str, Any] = {
        "_id": str(ObjectId()), "kind": kind, "openid": openid, "institution_id": institution["_id"],
        "institution_name": institution.get("name", ""), "service_id": service["_id"],
        "service_name": service.get("name", ""), "service_category": service.get("category"),
        "duration_minutes": int(service.get("duration_minutes") or 0), "slot_id": slot["_id"],
        "date": slot["date"], "start": slot["start"], "end": slot["end"], "status": t.INITIAL[kind],
        "status_reason": None, "patient": None, "address": None, "assessment": None, "nurse_id": None,
        "nurse": None, "note": _note(request.note), "idempotency_key": request.idempotency_key,
        "fingerprint": request.fingerprint(), "waitlist_id": request.waitlist_id, "cancel_deadline": slot["start"],
        "review_deadline": None, "reminder_keys": {}, "confirmed_seat": False,
        "created_at": now, "updated_at": now, "version": 1,
    }
    if booking["status"] in _REMINDED:
        booking["reminder_keys"] = reminder_keys(booking, now)
    if kind == t.NURSING:
        if not request.patient_id:
            raise bad_request("patient_required", "请选择就诊人（patient_id）")
        patient = await patients.get(db, openid, request.patient_id)
        address = _address(request.address, patient)
        _check_service_area(institution, address)
        booking.update(
            patient=patients.snapshot(patient), address=address, assessment=assessment.validate(request.assessment),
            **_nursing_deadlines(institution, slot["start"], now),
        )
        # issue 16: the nursing consent accepted (version, when, by whom); refused if not the current one
        booking["consent"] = await consent_texts.accept_for_booking(db, institution, service,
                                                                    request.consent_version, openid, now)
    return booking


def _note(note: Any) -> str | None:
    if note is None or note == "":
        return None
    if not isinstance(note, str) or len(note) > 200:
        raise bad_request("invalid_note", "备注应为不超过 200 字的文字")
    return note.strip()


def _address(given: dict[str, Any] | None, patient: dict[str, Any]) -> dict[str, str]:
    if given is None:
        if not patient.get("address"):
            raise bad_request("address_required", "请填写上门服务地址")
        return patient["address"]
    problems: dict[str, str] = {}
    address = patients.validate_address(given, problems)
    if address is None:
        raise ApiError(400, "invalid_address", "地址有误：" + "；".join(problems.values()), fields=problems)
    return address


def _check_service_area(institution: dict[str, Any], address: dict[str, str]) -> None:
    for area in institution.get("service_area") or []:
        if area.get("district") == address["district"] and (
            not area.get("streets") or address["street"] in area["streets"]
        ):
            return
    raise bad_request("outside_service_area",
                      f"该地址不在{institution.get('name', '该机构')}的上门服务范围内",
                      service_area=institution.get("service_area") or [])


def _nursing_deadlines(institution: dict[str, Any], start: datetime, now: datetime) -> dict[str, datetime]:
    """A nursing visit's deadlines: the family cancels itself until N hours before, staff review by
    ``_review_deadline``."""
    return {"cancel_deadline": start - timedelta(hours=institution.get("cancel_deadline_hours", DEFAULT_CANCEL_HOURS)),
            "review_deadline": _review_deadline(institution, start, now)}


def _review_deadline(institution: dict[str, Any], start: datetime, now: datetime) -> datetime:
    """Requests not reviewed by min(now + N h, visit - 2 h) expire; too late to review → refused."""
    hours = institution.get("review_deadline_hours", DEFAULT_REVIEW_HOURS)
    deadline = min(now + timedelta(hours=hours), start - REVIEW_LEAD)
    if deadline <= now:
        raise ApiError(409, "too_late_to_request", "距上门时间不足 2 小时，机构来不及审核，请选择更晚的时段")
    return deadline


async def _insert_new(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], slot: dict[str, Any],
    waitlist_id: str | None, policy: Policy, now: datetime,
) -> None:
    try:
        await db[BOOKINGS].insert_one(booking, session=session)
    except DuplicateKeyError:
        raise _KeyTakenError() from None
    if waitlist_id:
        await waitlist.claim_offer(db, session, waitlist_id, booking["openid"], booking["slot_id"],
                                   booking["_id"], now)
    try:
        # The family's counter: matches below the limit, creates it at the first booking; a family
        # at the limit makes the upsert collide with its own counter document.
        await db[QUOTAS].update_one({"_id": booking["openid"], "active": {"$lt": policy.max_active_bookings}},
                                    {"$inc": {"active": 1}}, upsert=True, session=session)
    except DuplicateKeyError:
        raise ApiError(409, "too_many_active_bookings",
                       f"您已有 {policy.max_active_bookings} 个未完成的预约，请先完成或取消后再预约",
                       limit=policy.max_active_bookings) from None
    await _schedule_reminders(db, session, booking)
    await audit(db, session, entity="booking", entity_id=booking["_id"], actor=Actor.resident(booking["openid"]),
                action="create", source=None, target=booking["status"], at=now,
                details={"slot_id": booking["slot_id"], "service_id": booking["service_id"],
                         "waitlist_id": waitlist_id})
    # The seat is taken last: concurrent bookings of one slot conflict on the slot document, and
    # the shorter the time from that write to the commit, the fewer of them have to retry.
    if not waitlist_id and not await take(db, session, booking["slot_id"], seen=slot):
        raise SLOT_FULL


# ---------------------------------------------------------------- reminders


def reminder_keys(booking: dict[str, Any], now: datetime) -> dict[str, str]:
    """Keys of the reminders 24 h and 2 h before the visit; those already past are skipped."""
    return {label: f"reminder:{booking['_id']}:{label}" for label, before in REMINDERS.items()
            if booking["start"] - before > now}


async def _schedule_reminders(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any]) -> None:
    """Enqueue the reminders named in ``booking["reminder_keys"]``."""
    for label, key in booking["reminder_keys"].items():
        await outbox.enqueue(db, kind="booking_reminder", openid=booking["openid"],
                             due_at=booking["start"] - REMINDERS[label], key=key, session=session,
                             payload=notification_payload(booking, remind_before=label))


async def _cancel_reminders(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any]) -> None:
    for key in (booking.get("reminder_keys") or {}).values():
        await outbox.cancel(db, key, session=session)


async def _move_reminders(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], now: datetime
) -> dict[str, str]:
    """After a reschedule: pending reminders move; one already sent or skipped gets a new key."""
    keys = dict(booking.get("reminder_keys") or {})
    for label, before in REMINDERS.items():
        due, key = booking["start"] - before, keys.get(label)
        payload = notification_payload(booking, remind_before=label)
        if due <= now:
            if key:
                await outbox.cancel(db, key, session=session)
                del keys[label]
            continue
        if key and await outbox.reschedule(db, key, due, payload, session=session):
            continue
        key = f"reminder:{booking['_id']}:{label}:v{booking['version']}"
        await outbox.enqueue(db, kind="booking_reminder", openid=booking["openid"], due_at=due, key=key,
                             session=session, payload=payload)
        keys[label] = key
    return keys


# ---------------------------------------------------------------- status changes


def _check_access(booking: dict[str, Any] | None, actor: Actor) -> dict[str, Any]:
    """Residents see only their own bookings (others are 404: existence is never revealed); staff
    only their institution's; a nurse only the visits assigned to her."""
    if booking is None or (actor.kind == "resident" and booking["openid"] != actor.id):
        raise BOOKING_NOT_FOUND
    if actor.kind == "staff":
        if not actor.may_act_for(booking["institution_id"]):
            raise FORBIDDEN
        if actor.role == t.NURSE and (not actor.nurse_id or booking.get("nurse_id") != actor.nurse_id):
            raise FORBIDDEN
    return booking


def _situation(booking: dict[str, Any], actor: Actor, now: datetime, reason: str | None = None) -> t.Situation:
    return t.Situation(
        now=now, start=booking["start"], actor=actor.role, cancel_deadline=booking.get("cancel_deadline"),
        review_deadline=booking.get("review_deadline"), reason=reason,
        actor_is_assigned_nurse=bool(actor.nurse_id) and booking.get("nurse_id") == actor.nurse_id,
    )


async def transition(
    db: AsyncDatabase, booking_id: str, target: str, actor: Actor, policy: Policy, *,
    reason: str | None = None, nurse_id: str | None = None, now: datetime | None = None,
) -> dict[str, Any]:
    """Move a booking to ``target`` as the transition table allows; returns the changed booking."""
    now = now or datetime.now(UTC)
    reason = reason.strip()[:200] if isinstance(reason, str) and reason.strip() else None

    async def work(session: AsyncClientSession) -> tuple[dict[str, Any], str]:
        booking = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}, session=session), actor)
        try:
            rule = t.decide(booking["kind"], booking["status"], target, _situation(booking, actor, now, reason))
        except t.TransitionError as exc:
            raise api_error(exc) from None
        changes: dict[str, Any] = {"status": target, "status_reason": reason, "updated_at": now}
        nurse = await _qualified_nurse(db, session, booking, nurse_id) if rule.assigns_nurse else None
        if nurse is not None:
            changes.update(nurse_id=nurse["_id"], confirmed_seat=True,
                           nurse={"id": nurse["_id"], "name": nurse.get("name", ""), "title": nurse.get("title", "")})
        if rule.reminders == t.SCHEDULE:
            changes["reminder_keys"] = reminder_keys(booking, now)
        # The conditional status update comes first: every effect below happens only if it matched.
        updated = await update_and_get(
            db, BOOKINGS, {"_id": booking_id, "status": booking["status"], "version": booking["version"]},
            {"$set": changes, "$inc": {"version": 1}}, session)
        if updated is None:
            raise CHANGED_MEANWHILE
        if nurse is not None:
            await _reserve_nurse(db, session, updated, nurse)
            await _confirm_seat(db, session, updated["slot_id"])
        if rule.releases_seat:
            await waitlist.release_seat(db, session, booking["slot_id"], policy, now)
            if booking.get("confirmed_seat"):
                await db[SLOTS].update_one({"_id": booking["slot_id"], "confirmed": {"$gt": 0}},
                                           {"$inc": {"confirmed": -1}}, session=session)
        if rule.releases_nurse:
            await db[ASSIGNMENTS].delete_many({"booking_id": booking_id}, session=session)
        if t.quota_delta(booking["status"], target) < 0:
            await db[QUOTAS].update_one({"_id": booking["openid"], "active": {"$gt": 0}}, {"$inc": {"active": -1}},
                                        session=session)
        if rule.reminders == t.SCHEDULE:
            await _schedule_reminders(db, session, updated)
        elif rule.reminders == t.CANCEL:
            await _cancel_reminders(db, session, booking)
        if rule.notification:
            await outbox.enqueue(db, kind=rule.notification, openid=booking["openid"], session=session,
                                 payload=notification_payload(updated, reason=reason))
        await audit(db, session, entity="booking", entity_id=booking_id, actor=actor, action="transition",
                    source=booking["status"], target=target, at=now, reason=reason,
                    details={"nurse_id": nurse["_id"]} if nurse else None)
        return updated, booking["status"]

    updated, source = await in_transaction(db.client, work)
    BOOKING_TRANSITIONS.labels(updated["kind"], source, target).inc()
    log.info("booking transition", extra={"booking_id": booking_id, "to": target, "actor_kind": actor.kind})
    return updated


async def _qualified_nurse(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], nurse_id: str | None
) -> dict[str, Any]:
    if not isinstance(nurse_id, str) or not nurse_id:
        raise bad_request("nurse_required", "确认上门服务时须指派护士（nurse_id）")
    nurse = await db[NURSES].find_one({"_id": nurse_id}, session=session)
    if nurse is None or nurse.get("institution_id") != booking["institution_id"]:
        raise bad_request("nurse_not_found", "找不到该护士，或该护士不属于本机构")
    if not nurse.get("active", False):
        raise ApiError(409, "nurse_inactive", "该护士已停用")
    if not nurse.get("qualified", False):
        raise ApiError(409, "nurse_not_qualified", "该护士不符合上门服务资质（5 年以上临床经验、护师及以上职称）")
    skills = nurse.get("skills") or []
    if skills and booking.get("service_category") and booking["service_category"] not in skills:
        raise ApiError(409, "nurse_lacks_skill", f"该护士未登记「{booking['service_category']}」类服务技能")
    await nurse_credentials.check_assignable(db, nurse["_id"], booking["start"], session=session)  # issue 16
    return nurse


def visit_interval(booking: dict[str, Any]) -> tuple[datetime, datetime]:
    """The nurse is taken for the whole visit window, longer if the item itself takes longer."""
    start = booking["start"]
    return start, max(booking["end"], start + timedelta(minutes=booking.get("duration_minutes") or 0))


def buckets(start: datetime, end: datetime) -> list[datetime]:
    """The 15-minute buckets (aligned to the epoch) that [start, end) touches."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + ((start - epoch) // BUCKET) * BUCKET
    out = []
    while first < end:
        out.append(first)
        first += BUCKET
    return out


async def _reserve_nurse(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], nurse: dict[str, Any]
) -> None:
    start, end = visit_interval(booking)
    documents = [{"nurse_id": nurse["_id"], "bucket": bucket, "booking_id": booking["_id"], "start": start,
                  "end": end} for bucket in buckets(start, end)]
    try:
        await db[ASSIGNMENTS].insert_many(documents, session=session)
    except DuplicateKeyError:
        raise NURSE_BUSY from None
    except BulkWriteError as exc:
        if any(error.get("code") == 11000 for error in exc.details.get("writeErrors", [])):
            raise NURSE_BUSY from None
        raise


async def _confirm_seat(db: AsyncDatabase, session: AsyncClientSession, slot_id: str) -> None:
    """Confirmation re-checks capacity: confirmed visits of a slot never exceed its current capacity
    (staff may have reduced it after the requests came in)."""
    if not await take(db, session, slot_id, counter="confirmed"):
        raise ApiError(409, "slot_over_capacity", "该时段的上门服务名额已减少且已满，请与家属协商改约或拒绝")


# ---------------------------------------------------------------- reschedule


async def reschedule(
    db: AsyncDatabase, booking_id: str, new_slot_id: str, actor: Actor, policy: Policy,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Move the booking (same id) to another slot of its institution: take the new seat and give
    the old one back in one transaction."""
    now = now or datetime.now(UTC)
    current = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}), actor)
    if new_slot_id == current["slot_id"]:
        raise bad_request("same_slot", "新时段与原时段相同")
    slot, _service, institution = await load_bookable(db, new_slot_id, current["service_id"], now)
    if institution["_id"] != current["institution_id"]:
        raise bad_request("other_institution", "只能改约到同一机构的其他时段")
    moved: dict[str, Any] = {"slot_id": slot["_id"], "date": slot["date"], "start": slot["start"],
                             "end": slot["end"], "cancel_deadline": slot["start"], "updated_at": now}
    if current["kind"] == t.NURSING:
        moved.update(_nursing_deadlines(institution, slot["start"], now))

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}, session=session), actor)
        try:
            t.check_reschedule(booking["kind"], booking["status"], _situation(booking, actor, now))
        except t.TransitionError as exc:
            raise api_error(exc) from None
        updated = await update_and_get(
            db, BOOKINGS, {"_id": booking_id, "status": booking["status"], "version": booking["version"]},
            {"$set": moved, "$inc": {"version": 1}}, session)
        if updated is None:
            raise CHANGED_MEANWHILE
        if not await take(db, session, slot["_id"]):
            raise SLOT_FULL
        await waitlist.release_seat(db, session, booking["slot_id"], policy, now)
        if updated["status"] in _REMINDED:
            keys = await _move_reminders(db, session, updated, now)
            await db[BOOKINGS].update_one({"_id": booking_id}, {"$set": {"reminder_keys": keys}}, session=session)
            updated["reminder_keys"] = keys
        await audit(db, session, entity="booking", entity_id=booking_id, actor=actor, action="reschedule",
                    source=booking["status"], target=booking["status"], at=now,
                    details={"from_slot": booking["slot_id"], "to_slot": slot["_id"]})
        return updated

    async with SLOT_QUEUE.turn(slot["_id"], policy.queue_per_slot):
        return await in_transaction(db.client, work)


# ---------------------------------------------------------------- reading


async def get(db: AsyncDatabase, booking_id: str, actor: Actor) -> dict[str, Any]:
    return _check_access(await db[BOOKINGS].find_one({"_id": booking_id}), actor)


async def list_for_family(
    db: AsyncDatabase, openid: str, *, status: str | None = None, upcoming_after: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The family's bookings, newest first; with ``upcoming_after`` only the upcoming ones, soonest first."""
    query: dict[str, Any] = {"openid": openid}
    if status:
        query["status"] = status
    if upcoming_after is not None:
        query["start"] = {"$gt": upcoming_after}
        if not status:
            query["status"] = {"$in": sorted(t.UPCOMING)}
        return await db[BOOKINGS].find(query).sort("start", ASCENDING).limit(limit).to_list(None)
    return await db[BOOKINGS].find(query).sort("start", DESCENDING).limit(limit).to_list(None)


async def list_for_staff(
    db: AsyncDatabase, actor: Actor, *, institution_id: str | None, status: str | None = None,
    date: str | None = None, limit: int = 200,
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {}
    if institution_id is not None:
        query["institution_id"] = institution_id
    if status:
        query["status"] = status
    if date:
        query["date"] = date
    if actor.role == t.NURSE:
        query["nurse_id"] = actor.nurse_id or "\x00none"
    return await db[BOOKINGS].find(query).sort("start", ASCENDING).limit(limit).to_list(None)


async def history(db: AsyncDatabase, booking_id: str) -> list[dict[str, Any]]:
    return await db[AUDIT].find({"entity": "booking", "entity_id": booking_id}).sort("at", ASCENDING).to_list(None)


def view(
    booking: dict[str, Any], *, reveal: bool, now: datetime | None = None,
    audit_records: list[dict[str, Any]] | None = None, show_actor_ids: bool = False,
) -> dict[str, Any]:
    """The API form. Phone and ID numbers are whole only when ``reveal`` (the family itself, staff
    of the handling institution)."""
    now = now or datetime.now(UTC)
    patient = booking.get("patient")
    if patient:
        patient = {**patient, "phone": patient.get("phone") if reveal else mask_phone(patient.get("phone")),
                   "id_number": (patient.get("id_number") if reveal else mask_id_number(patient.get("id_number")))
                   or None}
    status = booking["status"]
    out: dict[str, Any] = {
        "id": booking["_id"], "kind": booking["kind"], "status": status,
        "status_label": t.STATUS_LABELS.get(status, status), "status_reason": booking.get("status_reason"),
        "institution_id": booking["institution_id"], "institution_name": booking.get("institution_name", ""),
        "service_id": booking["service_id"], "service_name": booking.get("service_name", ""),
        "slot_id": booking["slot_id"], "date": booking["date"], "start": local(booking["start"]),
        "end": local(booking["end"]), "patient": patient, "address": booking.get("address"),
        "assessment": booking.get("assessment"), "nurse": booking.get("nurse"), "note": booking.get("note"),
        "cancel_deadline": local(booking["cancel_deadline"]) if booking.get("cancel_deadline") else None,
        "review_deadline": local(booking["review_deadline"]) if booking.get("review_deadline") else None,
        "can_cancel": status in t.UPCOMING and (booking.get("cancel_deadline") is None
                                                or now < booking["cancel_deadline"]),
        "next_statuses": t.targets(booking["kind"], status),
        "created_at": booking["created_at"], "updated_at": booking["updated_at"],
    }
    if audit_records is not None:
        out["history"] = [{
            "at": record["at"], "action": record["action"], "from": record["from"], "to": record["to"],
            "reason": record.get("reason"),
            "actor": record["actor"] if show_actor_ids else {"kind": record["actor"]["kind"]},
            **({"details": record["details"]} if record.get("action") == "reschedule" else {}),
        } for record in audit_records]
    return out


# ---------------------------------------------------------------- jobs


async def expire_unreviewed(db: AsyncDatabase, policy: Policy, now: datetime | None = None) -> int:
    """Job: nursing requests nobody reviewed before their review deadline expire (seat released)."""
    now = now or datetime.now(UTC)
    expired = 0
    due = db[BOOKINGS].find({"status": t.REQUESTED, "review_deadline": {"$lte": now}}, {"_id": 1}).limit(500)
    async for booking in due:
        try:
            await transition(db, booking["_id"], t.EXPIRED, Actor.system("expire_requests"), policy, now=now)
            expired += 1
        except ApiError as exc:  # reviewed or cancelled meanwhile
            log.info("request not expired", extra={"booking_id": booking["_id"], "code": exc.code})
    return expired
