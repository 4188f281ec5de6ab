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
import re
import secrets
from dataclasses import asdict, dataclass
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
    INSTITUTIONS,
    NURSES,
    REVIEW_LEAD,
    SLOT_FULL,
    SLOT_QUEUE,
    SLOTS,
    Actor,
    InstitutionRules,
    Policy,
    api_error,
    audit,
    load_bookable,
    local,
    local_text,
    notification_payload,
    take,
    update_and_get,
)

log = logging.getLogger(__name__)

QUOTAS = "booking_quotas"
ASSIGNMENTS = "nurse_assignments"
PATIENT_HOLDS = "patient_holds"
SUSPENSIONS = "booking_suspensions"
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
    # ``code_key`` ("institution|code") exists only while the code can be used: unique among the
    # institution's active bookings, free for reuse once a booking is checked in or over
    IndexModel("code_key", unique=True, name="code_key_unique",
               partialFilterExpression={"code_key": {"$type": "string"}}),
    IndexModel([("code", ASCENDING), ("updated_at", DESCENDING)], name="code_updated"),
    # ``hold_key`` ("slot|person") exists only while the booking is active: one person, one active
    # booking of a slot, whatever Idempotency-Key was used
    IndexModel("hold_key", unique=True, name="hold_key_unique",
               partialFilterExpression={"hold_key": {"$type": "string"}}),
    IndexModel([("openid", ASCENDING), ("institution_id", ASCENDING), ("status", ASCENDING),
                ("updated_at", DESCENDING)], name="openid_institution_status"),
)
declare_indexes(
    PATIENT_HOLDS,
    # a patient is never in two overlapping nursing visits: 15-minute buckets, as for nurses
    IndexModel([("patient_id", ASCENDING), ("bucket", ASCENDING)], unique=True, name="patient_bucket_unique"),
    IndexModel("booking_id", name="booking"),
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
ALREADY_BOOKED = ApiError(409, "already_booked", "该就诊人/来访人在此时段已有预约，无需重复预约")
PATIENT_BUSY = ApiError(409, "patient_busy", "该就诊人在此时间已有其他上门服务，请选择不重叠的时段")
CODE_NOT_FOUND = not_found("预约码无效，请核对后重试", "code_not_found")
CODE_OTHER_INSTITUTION = ApiError(403, "code_other_institution", "该预约码不是本机构的预约")
CODE_USED = ApiError(409, "code_used", "该预约码已使用（已签到），不能重复签到")
CODE_NOT_VALID = ApiError(409, "code_not_valid", "该预约已取消或已结束，预约码已失效")
CODE_EXPIRED = ApiError(409, "code_expired", "已过签到时间，该预约码已失效")
CODE_NOT_FOR_CHECK_IN = bad_request("code_not_for_check_in", "上门护理服务无需到场签到")

# Booking codes: 6 characters without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B).
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 6
PROVISIONAL_NOTE = "节假日安排以国务院通知为准，如有调整我们会通知您"
CHANNELS = {"self": "本人预约", "phone": "电话预约", "walk_in": "现场预约", "assisted": "帮办代办"}


class _KeyTakenError(Exception):
    """Another request with the same Idempotency-Key inserted its booking first."""


class _HoldTakenError(Exception):
    """The person already holds an active booking of the slot (committed: a concurrent uncommitted
    one is a write conflict, which the transaction retries)."""


class _CodeTakenError(Exception):
    """The random booking code is in use by another active booking of the institution: draw again."""


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    """What staff type or scan: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", raw or "").upper()


def _duplicate_on(exc: DuplicateKeyError | BulkWriteError) -> str:
    """The field of the unique index an insert or update collided on."""
    details = exc.details or {}
    if isinstance(exc, BulkWriteError):
        errors = details.get("writeErrors") or [{}]
        details = errors[0]
    pattern = details.get("keyPattern") or {}
    if pattern:
        return next(iter(pattern))
    message = str(details.get("errmsg", ""))
    for name in ("idempotency_key", "code_key", "hold_key"):
        if name in message:
            return name
    return ""


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
    visitor: dict[str, Any] | None = None
    matter: str | None = None
    acknowledge_no_free_cancel: bool = False
    # staff bookings on a resident's behalf: the channel (phone, walk_in, assisted)
    channel: str = "self"
    consent_version: int | None = None  # issue 16: the consent version the family accepted

    def fingerprint(self) -> str:
        """Identifies the whole request (every field but the key), so a key reused with any
        difference — the note included — is refused."""
        material = {k: v for k, v in asdict(self).items() if k != "idempotency_key"}
        text = json.dumps(material, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- create


async def create_booking(
    db: AsyncDatabase, openid: str | None, request: BookingRequest, policy: Policy, now: datetime | None = None,
    *, staff: Actor | None = None,
) -> tuple[dict[str, Any], bool]:
    """The booking and whether it is new (False: the first booking made with this key).

    ``staff``: a staff member books on a resident's behalf (``request.channel``); ``openid`` is then
    the family of the named patient, or None for a visitor without an account. Staff bookings do
    not count towards the family's limit and are not stopped by a no-show suspension."""
    now = now or datetime.now(UTC)
    first = await _first_with_key(db, openid, request)
    if first is not None:
        return first, False
    try:
        slot, service, institution = await load_bookable(db, request.slot_id, request.service_id, now)
        if staff is not None and not staff.may_act_for(institution["_id"]):
            raise FORBIDDEN
        if staff is None and openid is not None:
            await check_suspension(db, openid, institution, now)
        booking = await _new_booking(db, openid, request, slot, service, institution, now, staff)
    except ApiError as exc:
        BOOKINGS_REFUSED.labels(exc.code).inc()
        raise
    if not request.waitlist_id and slot["booked"] >= slot["capacity"]:
        # An early answer only; the seat is still taken by the conditional update in the transaction.
        BOOKINGS_REFUSED.labels(SLOT_FULL.code).inc()
        raise SLOT_FULL

    async def work(session: AsyncClientSession) -> None:
        await _insert_new(db, session, booking, slot, request.waitlist_id, policy, now, staff)

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
        except _CodeTakenError:
            _give_code(booking)
            continue
        except _HoldTakenError:
            # the same request under the same key may be the one holding it: that is a replay
            first = await _first_with_key(db, openid, request)
            if first is not None:
                return first, False
            BOOKINGS_REFUSED.labels(ALREADY_BOOKED.code).inc()
            raise ALREADY_BOOKED from None
        except ApiError as exc:
            BOOKINGS_REFUSED.labels(exc.code).inc()
            raise
        BOOKINGS_CREATED.labels(booking["kind"]).inc()
        log.info("booking created", extra={"booking_id": booking["_id"], "kind": booking["kind"],
                                           "slot_id": booking["slot_id"]})
        return booking, True
    raise IDEMPOTENCY_IN_PROGRESS


async def _first_with_key(db: AsyncDatabase, openid: str | None, request: BookingRequest) -> dict[str, Any] | None:
    first = await db[BOOKINGS].find_one({"openid": openid, "idempotency_key": request.idempotency_key})
    if first is not None and first.get("fingerprint") != request.fingerprint():
        raise IDEMPOTENCY_KEY_REUSED
    return first


def _give_code(booking: dict[str, Any]) -> None:
    booking["code"] = new_code()
    booking["code_key"] = f"{booking['institution_id']}|{booking['code']}"


def _holder(booking: dict[str, Any]) -> str:
    """Who the booking is for, as the unique hold sees it: the patient record of a nursing visit;
    the visitor of a centre booking, by ID number when given, else by name and phone."""
    patient = booking.get("patient") or {}
    if patient.get("patient_id") and booking["kind"] == t.NURSING:
        return f"patient:{patient['patient_id']}"
    visitor = booking.get("visitor") or {}
    if visitor.get("id_number"):
        return f"id:{visitor['id_number']}"
    return f"visitor:{visitor.get('name', '')}|{visitor.get('phone', '')}"


def hold_key(booking: dict[str, Any]) -> str:
    return f"{booking['slot_id']}|{_holder(booking)}"


async def _new_booking(
    db: AsyncDatabase, openid: str | None, request: BookingRequest, slot: dict[str, Any], service: dict[str, Any],
    institution: dict[str, Any], now: datetime, staff: Actor | None = None,
) -> dict[str, Any]:
    kind = institution["kind"]
    if staff is None and request.channel != "self":
        raise bad_request("invalid_channel", "只有工作人员代为预约时才能指定预约渠道")
    if staff is not None and request.channel not in CHANNELS:
        raise bad_request("invalid_channel", f"预约渠道应为以下之一：{'、'.join(k for k in CHANNELS if k != 'self')}")
    booking: dict[str, Any] = {
        "_id": str(ObjectId()), "kind": kind, "openid": openid, "institution_id": institution["_id"],
        "institution_name": institution.get("name", ""), "institution_phone": institution.get("phone"),
        "service_id": service["_id"],
        "service_name": service.get("name", ""), "service_category": service.get("category"),
        "duration_minutes": int(service.get("duration_minutes") or 0), "slot_id": slot["_id"],
        "date": slot["date"], "start": slot["start"], "end": slot["end"], "status": t.INITIAL[kind],
        "status_reason": None, "patient": None, "visitor": None, "matter": None, "address": None,
        "assessment": None, "nurse_id": None,
        "nurse": None, "note": _note(request.note), "idempotency_key": request.idempotency_key,
        "fingerprint": request.fingerprint(), "waitlist_id": request.waitlist_id, "cancel_deadline": slot["start"],
        "review_deadline": None, "reminder_keys": {}, "confirmed_seat": False,
        "provisional": bool(slot.get("provisional", False)), "code": None,
        "channel": request.channel if staff is not None else "self",
        "booked_by": {"username": staff.id, "role": staff.role} if staff is not None else None,
        "counts_quota": staff is None and openid is not None,
        "acknowledged_no_free_cancel": bool(request.acknowledge_no_free_cancel),
        "created_at": now, "updated_at": now, "version": 1,
    }
    patient = None
    if request.patient_id:
        patient = (await patients.get(db, openid, request.patient_id) if staff is None or openid is not None
                   else None)
        if patient is None:
            raise patients.PATIENT_NOT_FOUND
    if kind == t.NURSING:
        if patient is None:
            raise bad_request("patient_required", "请选择就诊人（patient_id）")
        address = _address(request.address, patient)
        _check_service_area(institution, address)
        booking.update(
            patient=patients.snapshot(patient), address=address, assessment=assessment.validate(request.assessment),
            **_nursing_deadlines(institution, slot["start"], now),
        )
        # issue 16: the nursing consent accepted (version, when, by whom); refused if not the current one
        booking["consent"] = await consent_texts.accept_for_booking(db, institution, service,
                                                                    request.consent_version, openid, now)
    else:
        booking["visitor"] = _visitor(request.visitor, patient)
        booking["matter"] = _matter(request.matter, service)
        _give_code(booking)
    if now >= booking["cancel_deadline"] and not request.acknowledge_no_free_cancel:
        raise ApiError(409, "no_free_cancel",
                       f"已过免费取消时间（{local_text(booking['cancel_deadline'])} 前可免费取消），"
                       "预约后不能自行取消。"
                       "如仍要预约，请确认知晓（acknowledge_no_free_cancel: true）后再提交",
                       cancel_deadline=local(booking["cancel_deadline"]).isoformat())
    if booking["status"] in _REMINDED and openid is not None:
        booking["reminder_keys"] = reminder_keys(booking, now)
    booking["hold_key"] = hold_key(booking)
    return booking


def _visitor(given: dict[str, Any] | None, patient: dict[str, Any] | None) -> dict[str, Any]:
    """The person who comes to the centre: given in the request, or the chosen patient."""
    if given is None and patient is not None:
        given = {"name": patient.get("name"), "phone": patient.get("phone"), "id_number": patient.get("id_number")}
    if given is None:
        raise bad_request("visitor_required", "请填写来访人的姓名和手机号（visitor）")
    return patients.validate_visitor(given)


def _matter(given: str | None, service: dict[str, Any]) -> str:
    if given is None or not given.strip():
        return service.get("name", "")
    if not isinstance(given, str) or len(given.strip()) > 100:
        raise bad_request("invalid_matter", "办理事项应为不超过 100 字的文字")
    return given.strip()


def _note(note: Any) -> str | None:
    if note is None or note == "":
        return None
    if not isinstance(note, str) or len(note) > 200:
        raise bad_request("invalid_note", "备注应为不超过 200 字的文字")
    return note.strip()


def _address(given: dict[str, Any] | None, patient: dict[str, Any]) -> dict[str, str]:
    """A home visit's address: district, street and detail (house number) all required."""
    if given is None:
        if not patient.get("address"):
            raise bad_request("address_required", "请填写上门服务地址")
        given = patient["address"]
    problems: dict[str, str] = {}
    address = patients.validate_address(given, problems)
    if address is not None and not address.get("detail"):
        problems["address.detail"] = "请填写详细地址（小区、楼栋、门牌号）"
        address = None
    if address is None:
        raise ApiError(400, "invalid_address", "上门地址不完整：" + "；".join(problems.values()), fields=problems)
    return address


def _check_service_area(institution: dict[str, Any], address: dict[str, str]) -> None:
    for area in institution.get("service_area") or []:
        if area.get("district") == address["district"] and (
            not area.get("streets") or address["street"] in area["streets"]
        ):
            return
    districts = "、".join(a.get("district", "") for a in institution.get("service_area") or [])
    raise bad_request("outside_service_area",
                      f"该地址不在{institution.get('name', '该机构')}的上门服务范围内"
                      + (f"（服务范围：{districts}）" if districts else ""),
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


def free_cancel_payload(booking: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a message may say about cancelling: free until the deadline only while it is ahead."""
    deadline = booking.get("cancel_deadline")
    return {"free_cancel": bool(deadline and now < deadline),
            "cancel_deadline_local": local_text(deadline) if deadline else None}


async def notify(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], kind: str,
                 **extra: Any) -> None:
    """A message to the family, when the booking has one (a walk-in visitor may have no account)."""
    if booking.get("openid"):
        await outbox.enqueue(db, kind=kind, openid=booking["openid"], session=session,
                             payload=notification_payload(booking, **extra))


async def _insert_new(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], slot: dict[str, Any],
    waitlist_id: str | None, policy: Policy, now: datetime, staff: Actor | None = None,
) -> None:
    try:
        await db[BOOKINGS].insert_one(booking, session=session)
    except DuplicateKeyError as exc:
        collided = _duplicate_on(exc)
        if collided == "code_key":
            raise _CodeTakenError() from None
        if collided == "hold_key":
            raise _HoldTakenError() from None
        raise _KeyTakenError() from None
    if booking["kind"] == t.NURSING:
        await _hold_patient(db, session, booking)
    if waitlist_id:
        await waitlist.claim_offer(db, session, waitlist_id, booking["openid"], booking["slot_id"],
                                   booking["_id"], now)
    if booking["counts_quota"]:
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
    await audit(db, session, entity="booking", entity_id=booking["_id"],
                actor=staff or Actor.resident(booking["openid"] or ""),
                action="create", source=None, target=booking["status"], at=now,
                details={"slot_id": booking["slot_id"], "service_id": booking["service_id"],
                         "waitlist_id": waitlist_id, "channel": booking["channel"]})
    await notify(db, session, booking, "booking_made" if booking["kind"] == t.CENTRE else "booking_requested",
                 **free_cancel_payload(booking, now),
                 review_deadline_local=local_text(booking["review_deadline"]) if booking.get("review_deadline")
                 else None)
    # The seat is taken last: concurrent bookings of one slot conflict on the slot document, and
    # the shorter the time from that write to the commit, the fewer of them have to retry.
    if not waitlist_id and not await take(db, session, booking["slot_id"], seen=slot):
        raise SLOT_FULL


async def _hold_patient(db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any]) -> None:
    """The patient's time for the visit, under a unique index: no two overlapping visits."""
    patient_id = (booking.get("patient") or {}).get("patient_id")
    if not patient_id:
        return
    start, end = visit_interval(booking)
    documents = [{"patient_id": patient_id, "bucket": bucket, "booking_id": booking["_id"]}
                 for bucket in buckets(start, end)]
    try:
        await db[PATIENT_HOLDS].insert_many(documents, session=session)
    except (DuplicateKeyError, BulkWriteError):
        raise PATIENT_BUSY from None

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


def _situation(booking: dict[str, Any], actor: Actor, now: datetime, reason: str | None = None,
               rules: InstitutionRules | None = None) -> t.Situation:
    rules = rules or InstitutionRules()
    check_in_from, check_in_until = rules.check_in_window(booking["start"], booking["end"])
    return t.Situation(
        now=now, start=booking["start"], actor=actor.role, cancel_deadline=booking.get("cancel_deadline"),
        review_deadline=booking.get("review_deadline"), reason=reason,
        actor_is_assigned_nurse=bool(actor.nurse_id) and booking.get("nurse_id") == actor.nurse_id,
        check_in_from=check_in_from, check_in_until=check_in_until, trip_from=rules.trip_from(booking["start"]),
        complete_from=rules.complete_from(booking["start"]),
    )


async def institution_rules(db: AsyncDatabase, institution_id: str,
                            session: AsyncClientSession | None = None) -> InstitutionRules:
    return InstitutionRules.of(await db[INSTITUTIONS].find_one({"_id": institution_id}, session=session))


async def transition(
    db: AsyncDatabase, booking_id: str, target: str, actor: Actor, policy: Policy, *,
    reason: str | None = None, nurse_id: str | None = None, now: datetime | None = None,
) -> dict[str, Any]:
    """Move a booking to ``target`` as the transition table allows; returns the changed booking.
    Cancelling a cancelled booking returns it unchanged."""
    now = now or datetime.now(UTC)
    reason = reason.strip()[:200] if isinstance(reason, str) and reason.strip() else None
    code = new_code()

    async def work(session: AsyncClientSession) -> tuple[dict[str, Any], str | None]:
        booking = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}, session=session), actor)
        if booking["status"] == target == t.CANCELLED:
            return booking, None
        rules = await institution_rules(db, booking["institution_id"], session)
        try:
            rule = t.decide(booking["kind"], booking["status"], target,
                            _situation(booking, actor, now, reason, rules))
        except t.TransitionError as exc:
            raise api_error(exc) from None
        changes: dict[str, Any] = {"status": target, "status_reason": reason, "updated_at": now}
        unset: dict[str, str] = {}
        nurse = await _qualified_nurse(db, session, booking, nurse_id) if rule.assigns_nurse else None
        if nurse is not None:
            changes.update(nurse_id=nurse["_id"], confirmed_seat=True, nurse=_nurse_snapshot(nurse))
        if target in t.CODE_ACTIVE and not booking.get("code_key"):
            changes.update(code=code, code_key=f"{booking['institution_id']}|{code}")
        elif target not in t.CODE_ACTIVE and booking.get("code_key"):
            unset["code_key"] = ""
        if target not in t.ACTIVE and booking.get("hold_key"):
            unset["hold_key"] = ""
        if rule.reminders == t.SCHEDULE and booking.get("openid"):
            changes["reminder_keys"] = reminder_keys(booking, now)
        update: dict[str, Any] = {"$set": changes, "$inc": {"version": 1}}
        if unset:
            update["$unset"] = unset
        # The conditional status update comes first: every effect below happens only if it matched.
        try:
            updated = await update_and_get(
                db, BOOKINGS, {"_id": booking_id, "status": booking["status"], "version": booking["version"]},
                update, session)
        except DuplicateKeyError as exc:
            if _duplicate_on(exc) == "code_key":
                raise _CodeTakenError() from None
            raise
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
        if target not in t.ACTIVE and booking["kind"] == t.NURSING:
            await db[PATIENT_HOLDS].delete_many({"booking_id": booking_id}, session=session)
        if (t.quota_delta(booking["status"], target) < 0 and booking.get("counts_quota", True)
                and booking.get("openid")):
            await db[QUOTAS].update_one({"_id": booking["openid"], "active": {"$gt": 0}}, {"$inc": {"active": -1}},
                                        session=session)
        if rule.reminders == t.SCHEDULE:
            await _schedule_reminders(db, session, updated)
        elif rule.reminders == t.CANCEL:
            await _cancel_reminders(db, session, booking)
        if rule.notification:
            await notify(db, session, updated, rule.notification, reason=reason, **free_cancel_payload(updated, now))
        await audit(db, session, entity="booking", entity_id=booking_id, actor=actor, action="transition",
                    source=booking["status"], target=target, at=now, reason=reason,
                    details={"nurse_id": nurse["_id"]} if nurse else None)
        if target == t.NO_SHOW and booking.get("openid"):
            await _apply_no_show_policy(db, session, updated, rules, now)
        return updated, booking["status"]

    for _ in range(10):
        try:
            updated, source = await in_transaction(db.client, work)
            break
        except _CodeTakenError:
            code = new_code()
    else:
        raise CHANGED_MEANWHILE
    if source is None:
        return updated
    BOOKING_TRANSITIONS.labels(updated["kind"], source, target).inc()
    log.info("booking transition", extra={"booking_id": booking_id, "to": target, "actor_kind": actor.kind})
    return updated


def _nurse_snapshot(nurse: dict[str, Any]) -> dict[str, str]:
    return {"id": nurse["_id"], "name": nurse.get("name", ""), "title": nurse.get("title", "")}


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
                             "end": slot["end"], "cancel_deadline": slot["start"], "updated_at": now,
                             "provisional": bool(slot.get("provisional", False))}
    moved["hold_key"] = hold_key({**current, **moved})
    if current["kind"] == t.NURSING:
        moved.update(_nursing_deadlines(institution, slot["start"], now))

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}, session=session), actor)
        try:
            t.check_reschedule(booking["kind"], booking["status"], _situation(booking, actor, now))
        except t.TransitionError as exc:
            raise api_error(exc) from None
        try:
            updated = await update_and_get(
                db, BOOKINGS, {"_id": booking_id, "status": booking["status"], "version": booking["version"]},
                {"$set": moved, "$inc": {"version": 1}}, session)
        except DuplicateKeyError:
            raise ALREADY_BOOKED from None
        if updated is None:
            raise CHANGED_MEANWHILE
        if updated["kind"] == t.NURSING:
            await db[PATIENT_HOLDS].delete_many({"booking_id": booking_id}, session=session)
            await _hold_patient(db, session, updated)
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


# ---------------------------------------------------------------- check-in by code


async def check_in_by_code(
    db: AsyncDatabase, raw_code: str, actor: Actor, policy: Policy, now: datetime | None = None
) -> dict[str, Any]:
    """Staff check a visitor in by the booking code (typed or scanned). Refused: a code of another
    institution, one already used, one of a cancelled or ended booking, outside the check-in window.
    Two scans of one code at once: the conditional status update lets exactly one through."""
    now = now or datetime.now(UTC)
    code = normalise_code(raw_code)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        raise CODE_NOT_FOUND
    query: dict[str, Any] = ({"code_key": f"{actor.institution_id}|{code}"} if actor.institution_id
                             else {"code": code, "code_key": {"$type": "string"}})
    booking = await db[BOOKINGS].find_one(query)
    if booking is None:
        raise await _why_not_usable(db, code, actor)
    if not actor.may_act_for(booking["institution_id"]):
        raise CODE_OTHER_INSTITUTION
    if booking["kind"] != t.CENTRE:
        raise CODE_NOT_FOR_CHECK_IN
    rules = await institution_rules(db, booking["institution_id"])
    if now > rules.check_in_window(booking["start"], booking["end"])[1]:
        raise CODE_EXPIRED
    try:
        return await transition(db, booking["_id"], t.CHECKED_IN, actor, policy, now=now)
    except ApiError as exc:
        if exc.code in ("booking_changed", "invalid_transition"):
            current = await db[BOOKINGS].find_one({"_id": booking["_id"]})
            if current is not None and current["status"] == t.CHECKED_IN:
                raise CODE_USED from None
            raise CODE_NOT_VALID from None
        raise


async def _why_not_usable(db: AsyncDatabase, code: str, actor: Actor) -> ApiError:
    """No usable booking has this code here: say why (used, another institution's, over, unknown)."""
    own = {"institution_id": actor.institution_id} if actor.institution_id else {}
    latest = await db[BOOKINGS].find_one({"code": code, **own}, sort=[("updated_at", DESCENDING)])
    if latest is not None:
        return CODE_USED if latest["status"] in (t.CHECKED_IN, t.COMPLETED) else CODE_NOT_VALID
    if own and await db[BOOKINGS].find_one({"code": code, "code_key": {"$type": "string"}}, {"_id": 1}):
        return CODE_OTHER_INSTITUTION
    return CODE_NOT_FOUND


# ---------------------------------------------------------------- reassign


async def reassign(
    db: AsyncDatabase, booking_id: str, nurse_id: str | None, actor: Actor, *, reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Clinic staff change the nurse of a confirmed visit: the new nurse's qualification and time
    are checked by the database (unique buckets) in the same transaction that releases the old
    nurse's time; the family is told."""
    now = now or datetime.now(UTC)
    reason = reason.strip()[:200] if isinstance(reason, str) and reason.strip() else None
    if actor.role not in (t.CLINIC_STAFF, t.ADMIN):
        raise FORBIDDEN

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        booking = _check_access(await db[BOOKINGS].find_one({"_id": booking_id}, session=session), actor)
        if booking["kind"] != t.NURSING or booking["status"] != t.CONFIRMED:
            raise ApiError(409, "invalid_transition",
                           f"当前状态为「{t.STATUS_LABELS.get(booking['status'], booking['status'])}」，"
                           "只有已确认、护士尚未出发的上门服务可以改派")
        nurse = await _qualified_nurse(db, session, booking, nurse_id)
        if nurse["_id"] == booking.get("nurse_id"):
            raise bad_request("same_nurse", "新指派的护士与当前护士相同")
        updated = await update_and_get(
            db, BOOKINGS, {"_id": booking_id, "status": t.CONFIRMED, "version": booking["version"]},
            {"$set": {"nurse_id": nurse["_id"], "nurse": _nurse_snapshot(nurse), "updated_at": now},
             "$inc": {"version": 1}}, session)
        if updated is None:
            raise CHANGED_MEANWHILE
        await db[ASSIGNMENTS].delete_many({"booking_id": booking_id}, session=session)
        await _reserve_nurse(db, session, updated, nurse)
        for label, key in (updated.get("reminder_keys") or {}).items():
            await outbox.reschedule(db, key, updated["start"] - REMINDERS[label],
                                    notification_payload(updated, remind_before=label), session=session)
        await notify(db, session, updated, "booking_reassigned", reason=reason,
                     previous_nurse_name=(booking.get("nurse") or {}).get("name"))
        await audit(db, session, entity="booking", entity_id=booking_id, actor=actor, action="reassign",
                    source=t.CONFIRMED, target=t.CONFIRMED, at=now, reason=reason,
                    details={"from_nurse": booking.get("nurse_id"), "to_nurse": nurse["_id"]})
        return updated

    return await in_transaction(db.client, work)


# ---------------------------------------------------------------- no-show policy


def _suspension_id(openid: str, institution_id: str) -> str:
    return f"{openid}|{institution_id}"


async def _apply_no_show_policy(
    db: AsyncDatabase, session: AsyncClientSession, booking: dict[str, Any], rules: InstitutionRules,
    now: datetime,
) -> None:
    """After a no-show: N of them within the window suspend the family's self-service booking at
    this institution (counted inside the transaction that records this one)."""
    if rules.no_show_limit <= 0:
        return
    since = now - timedelta(days=rules.no_show_window_days)
    count = await db[BOOKINGS].count_documents(
        {"openid": booking["openid"], "institution_id": booking["institution_id"], "status": t.NO_SHOW,
         "updated_at": {"$gte": since}}, session=session)
    if count < rules.no_show_limit:
        return
    until = now + timedelta(days=rules.no_show_suspend_days)
    reason = f"{rules.no_show_window_days} 天内 {count} 次预约未到场"
    suspension_id = _suspension_id(booking["openid"], booking["institution_id"])
    await db[SUSPENSIONS].update_one(
        {"_id": suspension_id},
        {"$set": {"openid": booking["openid"], "institution_id": booking["institution_id"],
                  "institution_name": booking.get("institution_name", ""), "reason": reason,
                  "no_shows": count, "since": now, "until": until, "lifted_at": None, "lifted_by": None,
                  "lift_reason": None, "updated_at": now}},
        upsert=True, session=session)
    await audit(db, session, entity="booking_suspension", entity_id=suspension_id, actor=Actor.system("no_show"),
                action="suspend", source=None, target="suspended", at=now, reason=reason,
                details={"until": until, "booking_id": booking["_id"]})
    await outbox.enqueue(db, kind="booking_suspended", openid=booking["openid"], session=session,
                         payload={**notification_payload(booking), "reason": reason,
                                  "until_local": local_text(until)})


def _is_active(suspension: dict[str, Any] | None, now: datetime) -> bool:
    return bool(suspension) and not suspension.get("lifted_at") and suspension["until"] > now


async def check_suspension(db: AsyncDatabase, openid: str, institution: dict[str, Any], now: datetime) -> None:
    suspension = await db[SUSPENSIONS].find_one({"_id": _suspension_id(openid, institution["_id"])})
    if _is_active(suspension, now):
        assert suspension is not None
        raise ApiError(403, "booking_suspended",
                       f"因{suspension['reason']}，您在{institution.get('name', '该机构')}的自助预约已暂停至 "
                       f"{local_text(suspension['until'])}。如有疑问请联系机构工作人员",
                       reason=suspension["reason"], until=local(suspension["until"]).isoformat())


async def suspensions_for_family(db: AsyncDatabase, openid: str, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    found = await db[SUSPENSIONS].find({"openid": openid}).to_list(None)
    return [s for s in found if _is_active(s, now)]


async def suspensions_for_staff(db: AsyncDatabase, institution_id: str | None,
                                now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    query = {"institution_id": institution_id} if institution_id else {}
    found = await db[SUSPENSIONS].find(query).sort("since", DESCENDING).to_list(500)
    return [s for s in found if _is_active(s, now)]


async def lift_suspension(db: AsyncDatabase, suspension_id: str, actor: Actor, reason: str | None,
                          now: datetime | None = None) -> dict[str, Any]:
    """Staff of the institution lift a suspension early, with a reason; audited."""
    now = now or datetime.now(UTC)
    reason = reason.strip()[:200] if isinstance(reason, str) else ""
    if not reason:
        raise bad_request("reason_required", "解除暂停须填写原因")

    async def work(session: AsyncClientSession) -> dict[str, Any]:
        suspension = await db[SUSPENSIONS].find_one({"_id": suspension_id}, session=session)
        if suspension is None:
            raise not_found("找不到该暂停记录", "suspension_not_found")
        if not actor.may_act_for(suspension["institution_id"]):
            raise FORBIDDEN
        if not _is_active(suspension, now):
            raise ApiError(409, "suspension_not_active", "该暂停已解除或已到期")
        lifted = await update_and_get(
            db, SUSPENSIONS, {"_id": suspension_id, "lifted_at": None},
            {"$set": {"lifted_at": now, "lifted_by": actor.id, "lift_reason": reason, "updated_at": now}}, session)
        if lifted is None:
            raise ApiError(409, "suspension_not_active", "该暂停已解除或已到期")
        await audit(db, session, entity="booking_suspension", entity_id=suspension_id, actor=actor, action="lift",
                    source="suspended", target="lifted", at=now, reason=reason)
        return lifted

    return await in_transaction(db.client, work)


def suspension_view(suspension: dict[str, Any]) -> dict[str, Any]:
    return {"id": suspension["_id"], "institution_id": suspension["institution_id"],
            "institution_name": suspension.get("institution_name", ""), "reason": suspension["reason"],
            "no_shows": suspension.get("no_shows"), "since": local(suspension["since"]),
            "until": local(suspension["until"]),
            "message": f"因{suspension['reason']}，自助预约暂停至 {local_text(suspension['until'])}"}


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
    visitor = booking.get("visitor")
    if visitor:
        visitor = {"name": visitor.get("name"),
                   "phone": visitor.get("phone") if reveal else mask_phone(visitor.get("phone")),
                   "id_number": (visitor.get("id_number") if reveal else mask_id_number(visitor.get("id_number")))
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
        "visitor": visitor, "matter": booking.get("matter"),
        "code": booking.get("code") if reveal else None,
        "code_active": bool(booking.get("code_key")),
        "qr_url": f"/api/v1/bookings/{booking['_id']}/qr.png" if booking.get("code") and reveal else None,
        "provisional": bool(booking.get("provisional", False)),
        "provisional_note": PROVISIONAL_NOTE if booking.get("provisional") else None,
        "acknowledged_no_free_cancel": bool(booking.get("acknowledged_no_free_cancel", False)),
        "channel": booking.get("channel", "self"),
        "channel_label": CHANNELS.get(booking.get("channel", "self"), ""),
        "booked_by": booking.get("booked_by"),
        "created_at": booking["created_at"], "updated_at": booking["updated_at"],
    }
    if audit_records is not None:
        out["history"] = [{
            "at": record["at"], "action": record["action"], "from": record["from"], "to": record["to"],
            "reason": record.get("reason"),
            "actor": record["actor"] if show_actor_ids else {"kind": record["actor"]["kind"]},
            **({"details": record["details"]} if record.get("action") in ("reschedule", "reassign") else {}),
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
