"""Booking round 2 on the real database: booking codes and check-in, visitors, one active booking
per person and slot, whole-request idempotency, complete addresses, the no-free-cancel
acknowledgement, time rules of staff actions, the family's messages, reassigning the nurse,
no-show suspensions, staff booking on a resident's behalf and provisional holiday days."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import ApiError
from bot.notify.templates import TemplateBook
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor, InstitutionRules
from tests.booking_factories import (
    ADDRESS,
    ASSESSMENT,
    CENTRE,
    CENTRE_SERVICE,
    CLINIC,
    NURSING_SERVICE,
    POLICY,
    make_institution,
    make_patient,
    make_slot,
    visitor,
    world,
)

FAMILY = "family-a"
UNQUEUED = replace(POLICY, queue_per_slot=False)
DESK = Actor("staff", "desk-1", t.CENTRE_STAFF, CENTRE)
OTHER_DESK = Actor("staff", "desk-2", t.CENTRE_STAFF, "other-centre")
CLINIC_STAFF = Actor("staff", "clinic-1", t.CLINIC_STAFF, CLINIC)
NURSE_LV = Actor("staff", "nurse-lv", t.NURSE, CLINIC, "nurse-lvli")


def centre(slot_id: str, key: str = "k", **kw) -> bookings.BookingRequest:
    kw.setdefault("visitor", visitor(key))
    return bookings.BookingRequest(slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=key, **kw)


def nursing(slot_id: str, patient_id: str, key: str = "n", **kw) -> bookings.BookingRequest:
    kw.setdefault("assessment", ASSESSMENT)
    return bookings.BookingRequest(slot_id=slot_id, service_id=NURSING_SERVICE, idempotency_key=key,
                                   patient_id=patient_id, **kw)


async def error_of(awaitable) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    return caught.value


def outcomes(results) -> Counter:
    return Counter("ok" if not isinstance(r, BaseException) else getattr(r, "code", repr(r)) for r in results)


async def confirmed_visit(db, w, openid: str = FAMILY, hour: int = 9, nurse: str = "nurse-lvli", **kw) -> dict:
    patient = await make_patient(db, openid)
    booking, _ = await bookings.create_booking(db, openid, nursing(await w.nursing_slot(hour=hour, **kw),
                                                                   patient["_id"], f"{openid}-{hour}"), POLICY)
    return await bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id=nurse)


# --- one person, one active booking of a slot -----------------------------------------------------

async def test_two_concurrent_bookings_of_one_patient_for_one_slot_with_different_keys_make_one(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    slot_id = await w.nursing_slot(capacity=3)
    results = await asyncio.gather(*(bookings.create_booking(db, FAMILY, nursing(slot_id, patient["_id"], f"key-{i}"),
                                                             UNQUEUED) for i in range(2)), return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 1, "already_booked": 1})
    assert await db.bookings.count_documents({"slot_id": slot_id}) == 1
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1
    assert (await db.booking_quotas.find_one({"_id": FAMILY}))["active"] == 1


async def test_ten_concurrent_centre_bookings_of_one_visitor_make_one(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    same = visitor("grandpa")
    results = await asyncio.gather(*(bookings.create_booking(db, FAMILY, centre(slot_id, f"k{i}", visitor=same),
                                                             UNQUEUED) for i in range(10)), return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 1, "already_booked": 9})
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1


async def test_a_patient_is_never_in_two_overlapping_visits_and_a_cancel_frees_the_time(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    nine, ten, eleven = [await w.nursing_slot(hour=h) for h in (9, 10, 11)]
    first, _ = await bookings.create_booking(db, FAMILY, nursing(nine, patient["_id"], "a"), POLICY)
    err = await error_of(bookings.create_booking(db, FAMILY, nursing(ten, patient["_id"], "b"), POLICY))
    assert (err.status, err.code) == (409, "patient_busy")
    await bookings.create_booking(db, FAMILY, nursing(eleven, patient["_id"], "c"), POLICY)  # adjacent: fine
    await bookings.transition(db, first["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    again, created = await bookings.create_booking(db, FAMILY, nursing(nine, patient["_id"], "d"), POLICY)
    assert created and again["status"] == "requested"


async def test_cancel_releases_the_hold_and_reschedule_moves_it(db):
    w = await world(db)
    nine, ten = await w.centre_slot(hour=9), await w.centre_slot(hour=10)
    person = visitor("p")
    booking, _ = await bookings.create_booking(db, FAMILY, centre(nine, "a", visitor=person), POLICY)
    await bookings.reschedule(db, booking["_id"], ten, Actor.resident(FAMILY), POLICY)
    await bookings.create_booking(db, FAMILY, centre(nine, "b", visitor=person), POLICY)  # nine is free again
    err = await error_of(bookings.create_booking(db, FAMILY, centre(ten, "c", visitor=person), POLICY))
    assert err.code == "already_booked"
    await bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    _, created = await bookings.create_booking(db, FAMILY, centre(ten, "c", visitor=person), POLICY)
    assert created


# --- idempotency compares the whole request -------------------------------------------------------

async def test_a_repeated_key_with_any_difference_in_the_body_is_a_422(db):
    w = await world(db)
    slot_id = await w.centre_slot()
    first, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, "same", note="带身份证"), POLICY)
    again, created = await bookings.create_booking(db, FAMILY, centre(slot_id, "same", note="带身份证"), POLICY)
    assert not created and again["_id"] == first["_id"]
    for changed in ({"note": "带户口本"}, {"note": None}, {"matter": "异地备案咨询"},
                    {"visitor": visitor("someone else")}, {"acknowledge_no_free_cancel": True}):
        err = await error_of(bookings.create_booking(db, FAMILY, centre(slot_id, "same", **{"note": "带身份证",
                                                                                        **changed}), POLICY))
        assert (err.status, err.code) == (422, "idempotency_key_reused"), changed


# --- visitor, matter and code ---------------------------------------------------------------------

async def test_a_centre_booking_records_visitor_matter_and_a_code(db):
    w = await world(db)
    slot_id = await w.centre_slot()
    err = await error_of(bookings.create_booking(db, FAMILY, centre(slot_id, visitor=None), POLICY))
    assert (err.status, err.code) == (400, "visitor_required")
    err = await error_of(bookings.create_booking(db, FAMILY, centre(slot_id, visitor={"name": "张三", "phone": "1"}),
                                                 POLICY))
    assert err.code == "invalid_visitor" and "电话" in err.message
    person = {"name": "张建国", "phone": "13800138000", "id_number": "11010519491231002x"}
    booking, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, visitor=person, matter="异地就医备案咨询"),
                                               POLICY)
    assert booking["visitor"] == {**person, "id_number": "11010519491231002X"}
    assert booking["matter"] == "异地就医备案咨询"
    code = booking["code"]
    assert len(code) == bookings.CODE_LENGTH and set(code) <= set(bookings.CODE_ALPHABET)
    assert not set(code) & set("0O1IL2Z5S8B")
    masked = bookings.view(booking, reveal=False)
    assert masked["visitor"]["phone"] == "138****8000" and masked["visitor"]["id_number"] == "110105********002X"
    assert masked["code"] is None and bookings.view(booking, reveal=True)["code"] == code
    default, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, "k2"), POLICY)
    assert default["matter"] == "异地就医备案" and default["code"] != code


async def test_codes_are_unique_among_active_bookings_of_an_institution(db, monkeypatch):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    draws = iter(["ACDEFG", "ACDEFG", "HJKMNP"])
    monkeypatch.setattr(bookings, "new_code", lambda: next(draws))
    first, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, "a"), POLICY)
    second, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, "b"), POLICY)
    assert (first["code"], second["code"]) == ("ACDEFG", "HJKMNP")  # the collision drew again
    assert await db.bookings.count_documents({}) == 2


async def test_nursing_visits_get_their_code_when_confirmed(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    booking, _ = await bookings.create_booking(db, FAMILY, nursing(await w.nursing_slot(), patient["_id"]), POLICY)
    assert booking["code"] is None
    confirmed = await bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    assert len(confirmed["code"]) == 6 and confirmed["code_key"] == f"{CLINIC}|{confirmed['code']}"
    err = await error_of(bookings.check_in_by_code(db, confirmed["code"], Actor("staff", "c", t.CLINIC_STAFF, CLINIC),
                                                   POLICY))
    assert err.code == "code_not_for_check_in"


# --- check-in by code -----------------------------------------------------------------------------

async def test_check_in_by_code_within_the_window_once(db):
    w = await world(db)
    await make_institution(db, "other-centre", "centre")
    booking, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot()), POLICY)
    code, start = booking["code"], booking["start"]
    err = await error_of(bookings.check_in_by_code(db, code, DESK, POLICY, now=start - timedelta(minutes=31)))
    assert (err.status, err.code) == (409, "check_in_too_early") and "签到" in err.message
    err = await error_of(bookings.check_in_by_code(db, code, OTHER_DESK, POLICY, now=start))
    assert (err.status, err.code) == (403, "code_other_institution")
    err = await error_of(bookings.check_in_by_code(db, "ZZZZZZ", DESK, POLICY, now=start))
    assert (err.status, err.code) == (404, "code_not_found")
    done = await bookings.check_in_by_code(db, f" {code[:3].lower()}-{code[3:]} ", DESK, POLICY,
                                           now=start - timedelta(minutes=30))
    assert done["status"] == "checked_in" and "code_key" not in done
    err = await error_of(bookings.check_in_by_code(db, code, DESK, POLICY, now=start))
    assert (err.status, err.code) == (409, "code_used")


async def test_expired_and_cancelled_codes_are_refused(db):
    w = await world(db)
    late, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(hour=9), "a"), POLICY)
    err = await error_of(bookings.check_in_by_code(db, late["code"], DESK, POLICY,
                                                   now=late["end"] + timedelta(minutes=1)))
    assert (err.status, err.code) == (409, "code_expired")
    gone, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(hour=10), "b"), POLICY)
    await bookings.transition(db, gone["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    err = await error_of(bookings.check_in_by_code(db, gone["code"], DESK, POLICY, now=gone["start"]))
    assert (err.status, err.code) == (409, "code_not_valid")


async def test_the_check_in_window_is_configurable_per_institution(db):
    w = await world(db)
    await db.institutions.update_one({"_id": CENTRE}, {"$set": {"booking_rules": {"check_in_before_minutes": 60,
                                                                                  "check_in_after_end_minutes": 10}}})
    booking, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot()), POLICY)
    err = await error_of(bookings.check_in_by_code(db, booking["code"], DESK, POLICY,
                                                   now=booking["end"] + timedelta(minutes=11)))
    assert err.code == "code_expired"
    done = await bookings.check_in_by_code(db, booking["code"], DESK, POLICY,
                                           now=booking["start"] - timedelta(minutes=59))
    assert done["status"] == "checked_in"


async def test_two_concurrent_check_ins_of_one_code_check_in_once(db):
    w = await world(db)
    booking, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot()), POLICY)
    results = await asyncio.gather(*(bookings.check_in_by_code(db, booking["code"], DESK, POLICY,
                                                               now=booking["start"]) for _ in range(2)),
                                   return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 1, "code_used": 1})
    assert await db.audit_log.count_documents({"entity_id": booking["_id"], "to": "checked_in"}) == 1


# --- addresses, deadlines, time rules -------------------------------------------------------------

async def test_a_home_visit_address_needs_district_street_and_detail_inside_the_service_area(db):
    w = await world(db)
    slot_id = await w.nursing_slot()
    patient = await make_patient(db, FAMILY)
    for address, field in (({"district": "婺城区", "street": "城东街道"}, "address.detail"),
                           ({"district": "婺城区", "street": "城东街道", "detail": ""}, "address.detail"),
                           ({"district": "婺城区", "detail": "1 号"}, "address.street"),
                           ({"street": "城东街道", "detail": "1 号"}, "address.district")):
        err = await error_of(bookings.create_booking(db, FAMILY, nursing(slot_id, patient["_id"], address=address),
                                                     POLICY))
        assert (err.status, err.code) == (400, "invalid_address") and field in err.details["fields"], address
    err = await error_of(bookings.create_booking(
        db, FAMILY, nursing(slot_id, patient["_id"], address={**ADDRESS, "district": "义乌市"}), POLICY))
    assert err.code == "outside_service_area" and "婺城区" in err.message
    incomplete = await make_patient(db, FAMILY, address={"district": "婺城区", "street": "城东街道", "detail": ""})
    err = await error_of(bookings.create_booking(db, FAMILY, nursing(slot_id, incomplete["_id"], "x"), POLICY))
    assert err.code == "invalid_address"


async def test_booking_after_the_cancel_deadline_needs_an_acknowledgement(db):
    await world(db)
    patient = await make_patient(db, FAMILY)
    # 04:51 for an 08:00 visit with a 4-hour deadline: the review still fits, free cancellation does not
    start = (datetime.now(UTC) + timedelta(hours=3, minutes=9)).replace(microsecond=0)
    slot_id = await make_slot(db, CLINIC, start, minutes=120, capacity=3, kind="nursing")
    err = await error_of(bookings.create_booking(db, FAMILY, nursing(slot_id, patient["_id"]), POLICY))
    assert (err.status, err.code) == (409, "no_free_cancel") and "acknowledge_no_free_cancel" in err.message
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 0
    booking, _ = await bookings.create_booking(
        db, FAMILY, nursing(slot_id, patient["_id"], "ack", acknowledge_no_free_cancel=True), POLICY)
    assert booking["acknowledged_no_free_cancel"] and not bookings.view(booking, reveal=True)["can_cancel"]
    book = TemplateBook.load()
    received = await db.notifications.find_one({"kind": "booking_requested"})
    text = book.render("booking_requested", received["payload"], require_template=False).text
    assert "已过免费取消时间" in text and "前在小程序「我的预约」中操作" not in text
    confirmed = await bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    message = await db.notifications.find_one({"kind": "booking_confirmed"})
    text = book.render("booking_confirmed", message["payload"], require_template=False).text
    assert "已过免费取消时间" in text and confirmed["status"] == "confirmed"


async def test_staff_actions_respect_time(db):
    w = await world(db)
    visit = await confirmed_visit(db, w)
    start = visit["start"]
    err = await error_of(bookings.transition(db, visit["_id"], t.ON_THE_WAY, NURSE_LV, POLICY,
                                             now=start - timedelta(hours=2, minutes=1)))
    assert (err.status, err.code) == (409, "trip_too_early") and "出发" in err.message
    err = await error_of(bookings.transition(db, visit["_id"], t.IN_SERVICE, NURSE_LV, POLICY, now=start))
    assert err.code == "invalid_transition" and "请先点击「出发」" in err.message
    err = await error_of(bookings.transition(db, visit["_id"], t.COMPLETED, NURSE_LV, POLICY, now=start))
    assert err.code == "invalid_transition" and "开始服务" in err.message
    await bookings.transition(db, visit["_id"], t.ON_THE_WAY, NURSE_LV, POLICY, now=start - timedelta(hours=2))
    await bookings.transition(db, visit["_id"], t.IN_SERVICE, NURSE_LV, POLICY, now=start - timedelta(minutes=10))
    err = await error_of(bookings.transition(db, visit["_id"], t.COMPLETED, NURSE_LV, POLICY,
                                             now=start - timedelta(minutes=1)))
    assert (err.status, err.code) == (409, "complete_too_early")
    done = await bookings.transition(db, visit["_id"], t.COMPLETED, NURSE_LV, POLICY, now=start)
    assert done["status"] == "completed"


async def test_time_rules_are_configurable_per_institution(db):
    w = await world(db)
    await db.institutions.update_one({"_id": CLINIC}, {"$set": {"booking_rules": {
        "trip_lead_minutes": 30, "complete_after_start_minutes": 20}}})
    visit = await confirmed_visit(db, w)
    start = visit["start"]
    err = await error_of(bookings.transition(db, visit["_id"], t.ON_THE_WAY, NURSE_LV, POLICY,
                                             now=start - timedelta(minutes=31)))
    assert err.code == "trip_too_early"
    await bookings.transition(db, visit["_id"], t.ON_THE_WAY, NURSE_LV, POLICY, now=start - timedelta(minutes=30))
    await bookings.transition(db, visit["_id"], t.IN_SERVICE, NURSE_LV, POLICY, now=start)
    err = await error_of(bookings.transition(db, visit["_id"], t.COMPLETED, NURSE_LV, POLICY,
                                             now=start + timedelta(minutes=19)))
    assert err.code == "complete_too_early"
    assert InstitutionRules.of({"booking_rules": {"trip_lead_minutes": -5, "no_show_limit": True}}) \
        == InstitutionRules()


# --- every step tells the family ------------------------------------------------------------------

async def test_messages_of_each_step(db):
    w = await world(db)
    await db.institutions.update_one({"_id": CLINIC}, {"$set": {"phone": "0579-82552114"}})
    book = TemplateBook.load()
    centre_booking, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot()), POLICY)
    made = await db.notifications.find_one({"kind": "booking_made"})
    assert made["openid"] == FAMILY and made["payload"]["code"] == centre_booking["code"]
    text = book.render("booking_made", made["payload"], require_template=False).text
    assert centre_booking["code"] in text and "预约码" in text
    visit = await confirmed_visit(db, w)
    received = await db.notifications.find_one({"kind": "booking_requested"})
    text = book.render("booking_requested", received["payload"], require_template=False).text
    assert "已收到" in text and "审核" in text
    confirmed = await db.notifications.find_one({"kind": "booking_confirmed"})
    text = book.render("booking_confirmed", confirmed["payload"], require_template=False).text
    start_local, end_local = bookings.local(visit["start"]), bookings.local(visit["end"])
    assert f"{start_local:%Y-%m-%d %H:%M}–{end_local:%H:%M}" in text
    assert "吕丽" in text and "0579-82552114" in text and visit["code"] in text
    assert "phone" not in str(confirmed["payload"]).replace("institution_phone", "")


async def test_provisional_days_are_said_in_the_confirmation(db):
    w = await world(db)
    slot_id = await w.centre_slot()
    await db.slots.update_one({"_id": slot_id}, {"$set": {"provisional": True}})
    booking, _ = await bookings.create_booking(db, FAMILY, centre(slot_id), POLICY)
    assert booking["provisional"] is True
    assert bookings.view(booking, reveal=True)["provisional_note"] == "节假日安排以国务院通知为准，如有调整我们会通知您"
    made = await db.notifications.find_one({"kind": "booking_made"})
    text = TemplateBook.load().render("booking_made", made["payload"], require_template=False).text
    assert "节假日安排以国务院通知为准，如有调整我们会通知您" in text
    plain, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(hour=10), "p"), POLICY)
    assert plain["provisional"] is False


# --- reassign -------------------------------------------------------------------------------------

async def test_reassign_rechecks_the_new_nurse_releases_the_old_and_tells_the_family(db):
    w = await world(db)
    visit = await confirmed_visit(db, w, hour=9)
    await confirmed_visit(db, w, openid="family-b", hour=10, nurse="nurse-chen")  # chen busy 10-12
    err = await error_of(bookings.reassign(db, visit["_id"], "nurse-chen", CLINIC_STAFF))
    assert (err.status, err.code) == (409, "nurse_busy")
    assert (await db.bookings.find_one({"_id": visit["_id"]}))["nurse_id"] == "nurse-lvli"  # rolled back
    assert await db.nurse_assignments.count_documents({"booking_id": visit["_id"], "nurse_id": "nurse-lvli"}) == 8
    err = await error_of(bookings.reassign(db, visit["_id"], "nurse-other", CLINIC_STAFF))
    assert err.code == "nurse_not_found"
    err = await error_of(bookings.reassign(db, visit["_id"], "nurse-lvli", CLINIC_STAFF))
    assert err.code == "same_nurse"
    err = await error_of(bookings.reassign(db, visit["_id"], "nurse-zhou", NURSE_LV))
    assert err.status == 403
    from tests.booking_factories import make_nurse

    await make_nurse(db, "nurse-zhou", CLINIC, name="周敏")
    moved = await bookings.reassign(db, visit["_id"], "nurse-zhou", CLINIC_STAFF, reason="吕丽临时请假")
    assert moved["nurse"]["name"] == "周敏" and moved["nurse_id"] == "nurse-zhou"
    assert await db.nurse_assignments.count_documents({"nurse_id": "nurse-lvli"}) == 0
    assert await db.nurse_assignments.count_documents({"nurse_id": "nurse-zhou"}) == 8
    note = await db.notifications.find_one({"kind": "booking_reassigned"})
    text = TemplateBook.load().render("booking_reassigned", note["payload"], require_template=False).text
    assert "周敏" in text and "吕丽" in text
    reminder = await db.notifications.find_one({"kind": "booking_reminder", "payload.booking_id": visit["_id"]})
    assert reminder["payload"]["nurse_name"] == "周敏"
    last = (await bookings.history(db, visit["_id"]))[-1]
    assert last["action"] == "reassign" and last["details"] == {"from_nurse": "nurse-lvli", "to_nurse": "nurse-zhou"}
    # the old nurse's time is free for another visit
    await confirmed_visit(db, w, openid="family-c", hour=9, nurse="nurse-lvli")


# --- no-show policy -------------------------------------------------------------------------------

async def test_three_no_shows_suspend_self_service_booking_until_staff_lift_it(db):
    w = await world(db)
    for day in (2, 3, 4):
        slot_id = await w.centre_slot(days=day)
        booking, _ = await bookings.create_booking(db, FAMILY, centre(slot_id, f"d{day}"), POLICY)
        await bookings.transition(db, booking["_id"], t.NO_SHOW, DESK, POLICY,
                                  now=booking["start"] + timedelta(hours=1))
    [suspension] = await bookings.suspensions_for_family(db, FAMILY)
    assert suspension["reason"] == "90 天内 3 次预约未到场"
    assert suspension["until"] - suspension["since"] == timedelta(days=30)
    assert await db.notifications.count_documents({"kind": "booking_suspended", "openid": FAMILY}) == 1
    err = await error_of(bookings.create_booking(db, FAMILY, centre(await w.centre_slot(days=5), "new"), POLICY))
    assert (err.status, err.code) == (403, "booking_suspended")
    assert "未到场" in err.message and bookings.local_text(suspension["until"])[:10] in err.message
    # another institution is not affected
    patient = await make_patient(db, FAMILY)
    await bookings.create_booking(db, FAMILY, nursing(await w.nursing_slot(days=5), patient["_id"]), POLICY)
    err = await error_of(bookings.lift_suspension(db, suspension["_id"], DESK, ""))
    assert err.code == "reason_required"
    err = await error_of(bookings.lift_suspension(db, suspension["_id"], OTHER_DESK, "x"))
    assert err.status == 403
    lifted = await bookings.lift_suspension(db, suspension["_id"], DESK, "家属说明了情况")
    assert lifted["lift_reason"] == "家属说明了情况"
    assert await db.audit_log.count_documents({"entity": "booking_suspension", "action": "lift",
                                               "actor.id": "desk-1", "reason": "家属说明了情况"}) == 1
    _, created = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(days=5), "new"), POLICY)
    assert created


async def test_no_shows_outside_the_window_do_not_count(db):
    w = await world(db)
    await db.institutions.update_one({"_id": CENTRE}, {"$set": {"booking_rules": {"no_show_limit": 2}}})
    old, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(days=2), "old"), POLICY)
    await bookings.transition(db, old["_id"], t.NO_SHOW, DESK, POLICY, now=old["start"] + timedelta(hours=1))
    await db.bookings.update_one({"_id": old["_id"]}, {"$set": {"updated_at": datetime.now(UTC) - timedelta(days=91)}})
    new, _ = await bookings.create_booking(db, FAMILY, centre(await w.centre_slot(days=3), "new"), POLICY)
    await bookings.transition(db, new["_id"], t.NO_SHOW, DESK, POLICY, now=new["start"] + timedelta(hours=1))
    assert await bookings.suspensions_for_family(db, FAMILY, now=new["start"]) == []


# --- staff book on a resident's behalf ------------------------------------------------------------

async def test_staff_book_for_a_walk_in_visitor_and_for_a_family_patient(db):
    w = await world(db)
    slot_id = await w.centre_slot()
    walk_in, created = await bookings.create_booking(
        db, None, centre(slot_id, "staff:desk-1:w1", channel="walk_in"), POLICY, staff=DESK)
    assert created and walk_in["openid"] is None and walk_in["channel"] == "walk_in"
    assert walk_in["booked_by"] == {"username": "desk-1", "role": "centre_staff"} and walk_in["code"]
    assert await db.notifications.count_documents({}) == 0  # nobody to tell
    view = bookings.view(walk_in, reveal=True)
    assert view["channel_label"] == "现场预约" and view["booked_by"]["username"] == "desk-1"
    err = await error_of(bookings.create_booking(db, None, centre(slot_id, "x", channel="walk_in"), POLICY,
                                                 staff=OTHER_DESK))
    assert err.status == 403
    err = await error_of(bookings.create_booking(db, FAMILY, centre(slot_id, "y", channel="phone"), POLICY))
    assert err.code == "invalid_channel"
    # on behalf of a family: the family sees it and is told
    patient = await make_patient(db, FAMILY)
    visit, _ = await bookings.create_booking(
        db, FAMILY, nursing(await w.nursing_slot(), patient["_id"], "staff:clinic-1:p1", channel="phone"), POLICY,
        staff=CLINIC_STAFF)
    assert [b["_id"] for b in await bookings.list_for_family(db, FAMILY)] == [visit["_id"]]
    assert visit["channel"] == "phone" and not visit["counts_quota"]
    assert await db.notifications.count_documents({"kind": "booking_requested", "openid": FAMILY}) == 1
    assert await db.booking_quotas.find_one({"_id": FAMILY}) is None
    await bookings.transition(db, visit["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    assert await db.booking_quotas.find_one({"_id": FAMILY}) is None  # its cancel does not touch the counter


# --- nurse accounts -------------------------------------------------------------------------------

async def test_a_nurse_account_must_name_its_nurse(db):
    from bot.accounts import staff

    with pytest.raises(ValueError):
        await staff.create_or_update(db, "n", "password-123", staff.NURSE, CLINIC)
    with pytest.raises(ValueError):
        await staff.create_or_update(db, "c", "password-123", staff.CLINIC_STAFF, CLINIC, nurse_id="nurse-lvli")
