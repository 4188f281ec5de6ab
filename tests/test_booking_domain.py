"""Booking domain on the real database: create, transitions, reschedule, reminders, audit, nurses."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import ApiError
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor, Policy
from tests.booking_factories import (
    ADDRESS,
    ASSESSMENT,
    CENTRE_SERVICE,
    CLINIC,
    NURSING_SERVICE,
    OTHER_CLINIC,
    POLICY,
    make_institution,
    make_nurse,
    make_patient,
    visitor,
    world,
)

FAMILY = "family-a"
CLINIC_STAFF = Actor("staff", "clinic-1", t.CLINIC_STAFF, CLINIC)
CENTRE_STAFF = Actor("staff", "centre-1", t.CENTRE_STAFF, "test-centre")


def centre_request(slot_id: str, key: str = "k1", **kw) -> bookings.BookingRequest:
    kw.setdefault("visitor", visitor(key))
    return bookings.BookingRequest(slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=key, **kw)


def nursing_request(slot_id: str, patient_id: str, key: str = "n1", **kw) -> bookings.BookingRequest:
    kw.setdefault("assessment", ASSESSMENT)
    return bookings.BookingRequest(slot_id=slot_id, service_id=NURSING_SERVICE, idempotency_key=key,
                                   patient_id=patient_id, **kw)


async def error_of(awaitable) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    return caught.value


async def test_centre_booking_takes_a_seat_with_audit_and_reminders(db):
    w = await world(db)
    slot_id = await w.centre_slot(days=3)
    booking, created = await bookings.create_booking(db, FAMILY, centre_request(slot_id), POLICY)
    assert created and booking["status"] == "booked" and booking["kind"] == "centre"
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1
    assert (await db.booking_quotas.find_one({"_id": FAMILY}))["active"] == 1
    records = await bookings.history(db, booking["_id"])
    assert [(r["action"], r["from"], r["to"], r["actor"]["kind"]) for r in records] == [
        ("create", None, "booked", "resident")]
    reminders = await db.notifications.find({"kind": "booking_reminder"}).sort("due_at", 1).to_list(None)
    assert [r["key"] for r in reminders] == [f"reminder:{booking['_id']}:24h", f"reminder:{booking['_id']}:2h"]
    assert reminders[0]["due_at"] == booking["start"] - timedelta(hours=24)
    assert reminders[0]["payload"]["service_name"] == "异地就医备案"
    assert reminders[0]["payload"]["start_local"].endswith("09:00")


async def test_reminders_already_in_the_past_are_skipped(db):
    await world(db)
    soon = datetime.now(UTC) + timedelta(hours=5)
    from tests.booking_factories import CENTRE, make_slot
    slot_id = await make_slot(db, CENTRE, soon.replace(microsecond=0))
    booking, _ = await bookings.create_booking(db, FAMILY, centre_request(slot_id), POLICY)
    assert list(booking["reminder_keys"]) == ["2h"]
    assert await db.notifications.count_documents({"kind": "booking_reminder"}) == 1


async def test_slot_errors(db):
    w = await world(db)
    full = await w.centre_slot(days=2, capacity=1, booked=1)
    assert (await error_of(bookings.create_booking(db, FAMILY, centre_request(full), POLICY))).code == "slot_full"
    err = await error_of(bookings.create_booking(db, FAMILY, centre_request("test-centre|2099-01-01|09:00"), POLICY))
    assert (err.status, err.code) == (404, "slot_not_found")
    withdrawn = await w.centre_slot(days=2, hour=10, status="withdrawn")
    assert (await error_of(bookings.create_booking(db, FAMILY, centre_request(withdrawn), POLICY))).code \
        == "slot_not_found"
    past = await w.centre_slot(days=-1)
    assert (await error_of(bookings.create_booking(db, FAMILY, centre_request(past), POLICY))).code == "slot_started"
    nursing_slot = await w.nursing_slot()
    err = await error_of(bookings.create_booking(db, FAMILY, centre_request(nursing_slot), POLICY))
    assert (err.status, err.code) == (400, "service_not_offered")
    # nothing was taken by the refused requests
    assert (await db.slots.find_one({"_id": full}))["booked"] == 1
    assert await db.bookings.count_documents({}) == 0
    assert (await db.booking_quotas.find_one({"_id": FAMILY}) or {}).get("active", 0) == 0


async def test_idempotency_key_returns_the_first_booking_and_refuses_a_different_request(db):
    w = await world(db)
    slot_id, other = await w.centre_slot(), await w.centre_slot(hour=10)
    first, created = await bookings.create_booking(db, FAMILY, centre_request(slot_id, key="same"), POLICY)
    again, created_again = await bookings.create_booking(db, FAMILY, centre_request(slot_id, key="same"), POLICY)
    assert created and not created_again and again["_id"] == first["_id"]
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1
    err = await error_of(bookings.create_booking(db, FAMILY, centre_request(other, key="same"), POLICY))
    assert (err.status, err.code) == (422, "idempotency_key_reused")
    # another family may use the same key for its own booking
    _, created_b = await bookings.create_booking(db, "family-b", centre_request(slot_id, key="same",
                                                                                 visitor=visitor("b")), POLICY)
    assert created_b


async def test_family_limit_of_active_bookings_is_enforced_and_freed_by_cancel(db):
    w = await world(db)
    policy = Policy(max_active_bookings=2)
    a, _ = await bookings.create_booking(db, FAMILY, centre_request(await w.centre_slot(hour=9), key="a"), policy)
    await bookings.create_booking(db, FAMILY, centre_request(await w.centre_slot(hour=10), key="b"), policy)
    third = centre_request(await w.centre_slot(hour=11), key="c")
    err = await error_of(bookings.create_booking(db, FAMILY, third, policy))
    assert (err.status, err.code) == (409, "too_many_active_bookings") and "2" in err.message
    assert (await db.slots.find_one({"_id": third.slot_id}))["booked"] == 0  # rolled back with the refusal
    await bookings.transition(db, a["_id"], t.CANCELLED, Actor.resident(FAMILY), policy)
    booking, created = await bookings.create_booking(db, FAMILY, third, policy)
    assert created and booking["status"] == "booked"


async def test_cancel_releases_the_seat_once_cancels_reminders_and_notifies(db):
    w = await world(db)
    slot_id = await w.centre_slot()
    booking, _ = await bookings.create_booking(db, FAMILY, centre_request(slot_id), POLICY)
    cancelled = await bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    assert cancelled["status"] == "cancelled" and cancelled["version"] == 2
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 0
    assert (await db.booking_quotas.find_one({"_id": FAMILY}))["active"] == 0
    statuses = {n["key"]: n["status"] async for n in db.notifications.find({"kind": "booking_reminder"})}
    assert set(statuses.values()) == {"cancelled"}
    assert await db.notifications.count_documents({"kind": "booking_cancelled", "openid": FAMILY}) == 1
    again = await bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    assert again["status"] == "cancelled" and again["version"] == 2  # cancel twice: unchanged, no error
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 0
    assert await db.notifications.count_documents({"kind": "booking_cancelled", "openid": FAMILY}) == 1
    records = await bookings.history(db, booking["_id"])
    assert [(r["from"], r["to"]) for r in records] == [(None, "booked"), ("booked", "cancelled")]


async def test_centre_desk_flow_and_no_show_rules(db):
    w = await world(db)
    booking, _ = await bookings.create_booking(db, FAMILY, centre_request(await w.centre_slot()), POLICY)
    err = await error_of(bookings.transition(db, booking["_id"], t.CHECKED_IN, Actor.resident(FAMILY), POLICY))
    assert (err.status, err.code) == (403, "forbidden")
    err = await error_of(bookings.transition(db, booking["_id"], t.NO_SHOW, CENTRE_STAFF, POLICY))
    assert err.code == "visit_not_started"
    await bookings.transition(db, booking["_id"], t.CHECKED_IN, CENTRE_STAFF, POLICY, now=booking["start"])
    done = await bookings.transition(db, booking["_id"], t.COMPLETED, CENTRE_STAFF, POLICY, now=booking["start"])
    assert done["status"] == "completed"
    assert (await db.slots.find_one({"_id": booking["slot_id"]}))["booked"] == 1  # a used seat stays used
    assert (await db.booking_quotas.find_one({"_id": FAMILY}))["active"] == 0
    later = await bookings.create_booking(db, FAMILY, centre_request(await w.centre_slot(hour=15), key="x"), POLICY)
    no_show = await bookings.transition(db, later[0]["_id"], t.NO_SHOW, CENTRE_STAFF, POLICY,
                                        now=later[0]["start"] + timedelta(minutes=20))
    assert no_show["status"] == "no_show"


async def test_resident_cannot_cancel_after_the_deadline_but_staff_can_with_reason(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    booking, _ = await bookings.create_booking(db, FAMILY, nursing_request(await w.nursing_slot(), patient["_id"]),
                                               POLICY)
    assert booking["cancel_deadline"] == booking["start"] - timedelta(hours=4)
    late = booking["cancel_deadline"] + timedelta(minutes=1)
    err = await error_of(bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY,
                                             now=late))
    assert (err.status, err.code) == (409, "cancel_deadline_passed")
    err = await error_of(bookings.transition(db, booking["_id"], t.CANCELLED, CLINIC_STAFF, POLICY, now=late))
    assert (err.status, err.code) == (400, "reason_required")
    done = await bookings.transition(db, booking["_id"], t.CANCELLED, CLINIC_STAFF, POLICY, now=late,
                                     reason="家属电话要求取消")
    assert done["status_reason"] == "家属电话要求取消"


async def test_nursing_request_validation(db):
    w = await world(db)
    slot_id = await w.nursing_slot()
    patient = await make_patient(db, FAMILY)
    no_patient = bookings.BookingRequest(slot_id=slot_id, service_id=NURSING_SERVICE, idempotency_key="a",
                                         assessment=ASSESSMENT)
    assert (await error_of(bookings.create_booking(db, FAMILY, no_patient, POLICY))).code == "patient_required"
    other_family_patient = await make_patient(db, "family-b")
    err = await error_of(bookings.create_booking(db, FAMILY, nursing_request(slot_id, other_family_patient["_id"]),
                                                 POLICY))
    assert (err.status, err.code) == (404, "patient_not_found")
    outside = {"district": "兰溪市", "street": "兰江街道", "detail": "1 号"}
    err = await error_of(bookings.create_booking(db, FAMILY, nursing_request(slot_id, patient["_id"], address=outside),
                                                 POLICY))
    assert (err.status, err.code) == (400, "outside_service_area") and "服务范围" in err.message
    wrong_street = {**ADDRESS, "street": "罗店镇"}
    err = await error_of(bookings.create_booking(
        db, FAMILY, nursing_request(slot_id, patient["_id"], address=wrong_street), POLICY))
    assert err.code == "outside_service_area"
    whole_district = {"district": "金东区", "street": "任意街道", "detail": "2 号"}  # no street list: whole district
    ok, _ = await bookings.create_booking(
        db, FAMILY, nursing_request(slot_id, patient["_id"], key="ok", address=whole_district), POLICY)
    assert ok["address"]["district"] == "金东区"
    err = await error_of(bookings.create_booking(
        db, FAMILY, nursing_request(slot_id, patient["_id"], key="b", assessment={"consciousness": "很好"}), POLICY))
    assert err.code == "invalid_assessment"
    assert set(err.details["fields"]) == {"consciousness", "mobility", "allergies", "current_conditions",
                                          "done_before"}
    assert "意识状态" in err.message


async def test_nursing_request_uses_the_patients_address_and_snapshots_the_patient(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    booking, _ = await bookings.create_booking(db, FAMILY, nursing_request(await w.nursing_slot(), patient["_id"]),
                                               POLICY)
    assert booking["status"] == "requested" and booking["address"] == ADDRESS
    assert booking["patient"]["name"] == "王秀英" and booking["patient"]["phone"] == "13912345678"
    assert booking["reminder_keys"] == {}  # reminders come with the confirmation
    assert booking["review_deadline"] <= booking["start"] - timedelta(hours=2)
    masked = bookings.view(booking, reveal=False)
    assert masked["patient"]["phone"] == "139****5678"
    assert masked["patient"]["id_number"] == "110105********002X"
    assert bookings.view(booking, reveal=True)["patient"]["phone"] == "13912345678"


async def test_request_too_close_to_the_visit_is_refused(db):
    await world(db)
    from tests.booking_factories import make_slot
    soon = (datetime.now(UTC) + timedelta(minutes=90)).replace(microsecond=0)
    slot_id = await make_slot(db, CLINIC, soon, minutes=120, capacity=3, kind="nursing")
    patient = await make_patient(db, FAMILY)
    err = await error_of(bookings.create_booking(db, FAMILY, nursing_request(slot_id, patient["_id"]), POLICY))
    assert err.code == "too_late_to_request"
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 0


async def test_confirm_assigns_a_qualified_nurse_schedules_reminders_and_notifies(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    booking, _ = await bookings.create_booking(db, FAMILY, nursing_request(await w.nursing_slot(), patient["_id"]),
                                               POLICY)
    err = await error_of(bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY))
    assert err.code == "nurse_required"
    err = await error_of(bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-other"))
    assert err.code == "nurse_not_found"  # a nurse of another institution
    await make_nurse(db, "nurse-junior", CLINIC, title="护士", years_of_practice=2, qualified=False)
    err = await error_of(bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-junior"))
    assert err.code == "nurse_not_qualified"
    await make_nurse(db, "nurse-baby", CLINIC, skills=["母婴护理"])
    err = await error_of(bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-baby"))
    assert err.code == "nurse_lacks_skill"
    assert await db.nurse_assignments.count_documents({}) == 0

    confirmed = await bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                          nurse_id="nurse-lvli")
    assert confirmed["status"] == "confirmed" and confirmed["nurse"]["name"] == "吕丽"
    assert await db.nurse_assignments.count_documents({"nurse_id": "nurse-lvli"}) == 8  # 2 h in 15-min buckets
    assert (await db.slots.find_one({"_id": booking["slot_id"]}))["confirmed"] == 1
    assert sorted(confirmed["reminder_keys"]) == ["24h", "2h"]
    note = await db.notifications.find_one({"kind": "booking_confirmed"})
    assert note["openid"] == FAMILY and note["payload"]["nurse_name"] == "吕丽"
    assert "phone" not in str(note["payload"])

    nurse = Actor("staff", "demo-nurse", t.NURSE, CLINIC, "nurse-lvli")
    stranger = Actor("staff", "n2", t.NURSE, CLINIC, "nurse-chen")
    err = await error_of(bookings.transition(db, booking["_id"], t.ON_THE_WAY, stranger, POLICY))
    assert err.status == 403
    start = booking["start"]
    for target, when in ((t.ON_THE_WAY, start - timedelta(hours=1)), (t.IN_SERVICE, start),
                         (t.COMPLETED, start + timedelta(minutes=50))):
        await bookings.transition(db, booking["_id"], target, nurse, POLICY, now=when)
    records = await bookings.history(db, booking["_id"])
    assert [r["to"] for r in records] == ["requested", "confirmed", "on_the_way", "in_service", "completed"]
    assert records[1]["actor"] == {"kind": "staff", "id": "clinic-1", "role": "clinic_staff"}


async def test_a_nurse_is_never_in_two_overlapping_visits(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    nine = await w.nursing_slot(hour=9)
    ten = await w.nursing_slot(hour=10)  # overlaps 9-11
    eleven = await w.nursing_slot(hour=11)  # adjacent to 9-11
    others = [await make_patient(db, f"family-{n}") for n in "bc"]
    first, _ = await bookings.create_booking(db, FAMILY, nursing_request(nine, patient["_id"], key="1"), POLICY)
    second, _ = await bookings.create_booking(db, "family-b", nursing_request(ten, others[0]["_id"], key="2"), POLICY)
    third, _ = await bookings.create_booking(db, "family-c", nursing_request(eleven, others[1]["_id"], key="3"), POLICY)
    await bookings.transition(db, first["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    err = await error_of(bookings.transition(db, second["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-lvli"))
    assert (err.status, err.code) == (409, "nurse_busy")
    assert (await db.bookings.find_one({"_id": second["_id"]}))["status"] == "requested"  # rolled back
    await bookings.transition(db, third["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    # cancelling the visits around it frees the nurse for the overlapping one
    await bookings.transition(db, first["_id"], t.CANCELLED, Actor.resident(FAMILY), POLICY)
    assert await db.nurse_assignments.count_documents({"booking_id": first["_id"]}) == 0
    err = await error_of(bookings.transition(db, second["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-lvli"))
    assert err.code == "nurse_busy"  # 10-12 still overlaps the confirmed 11-13
    await bookings.transition(db, third["_id"], t.CANCELLED, CLINIC_STAFF, POLICY, reason="护士调班")
    await bookings.transition(db, second["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")


async def test_confirmation_rechecks_a_reduced_capacity(db):
    w = await world(db)
    slot_id = await w.nursing_slot(capacity=2)
    a = await make_patient(db, FAMILY)
    first, _ = await bookings.create_booking(db, FAMILY, nursing_request(slot_id, a["_id"], key="1"), POLICY)
    b = await make_patient(db, FAMILY, name="李建华")
    second, _ = await bookings.create_booking(db, FAMILY, nursing_request(slot_id, b["_id"], key="2"), POLICY)
    await db.slots.update_one({"_id": slot_id}, {"$set": {"capacity": 1}})  # staff reduced it (engineer A's code)
    await bookings.transition(db, first["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    err = await error_of(bookings.transition(db, second["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY,
                                             nurse_id="nurse-chen"))
    assert err.code == "slot_over_capacity"
    assert await db.nurse_assignments.count_documents({"nurse_id": "nurse-chen"}) == 0


async def test_reject_and_expire_release_the_seat(db):
    w = await world(db)
    slot_id = await w.nursing_slot()
    patient = await make_patient(db, FAMILY)
    a, _ = await bookings.create_booking(db, FAMILY, nursing_request(slot_id, patient["_id"], key="1"), POLICY)
    other = await make_patient(db, FAMILY, name="李建华")
    b, _ = await bookings.create_booking(db, FAMILY, nursing_request(slot_id, other["_id"], key="2"), POLICY)
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 2
    err = await error_of(bookings.transition(db, a["_id"], t.REJECTED, CLINIC_STAFF, POLICY))
    assert err.code == "reason_required"
    await bookings.transition(db, a["_id"], t.REJECTED, CLINIC_STAFF, POLICY, reason="该地址暂无护士可上门")
    rejected = await db.notifications.find_one({"kind": "booking_rejected"})
    assert rejected["payload"]["reason"] == "该地址暂无护士可上门"
    assert await bookings.expire_unreviewed(db, POLICY) == 0  # not due yet
    assert await bookings.expire_unreviewed(db, POLICY, now=b["review_deadline"]) == 1
    assert (await db.bookings.find_one({"_id": b["_id"]}))["status"] == "expired"
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 0
    assert await db.notifications.count_documents({"kind": "booking_expired"}) == 1
    expiry = (await bookings.history(db, b["_id"]))[-1]
    assert expiry["actor"]["kind"] == "system" and expiry["to"] == "expired"


async def test_reschedule_moves_seat_and_reminders_keeping_the_id(db):
    w = await world(db)
    old, new = await w.centre_slot(days=3), await w.centre_slot(days=4, hour=14)
    booking, _ = await bookings.create_booking(db, FAMILY, centre_request(old), POLICY)
    moved = await bookings.reschedule(db, booking["_id"], new, Actor.resident(FAMILY), POLICY)
    assert moved["_id"] == booking["_id"] and moved["slot_id"] == new and moved["start"] > booking["start"]
    assert (await db.slots.find_one({"_id": old}))["booked"] == 0
    assert (await db.slots.find_one({"_id": new}))["booked"] == 1
    reminder = await db.notifications.find_one({"key": f"reminder:{booking['_id']}:24h"})
    assert reminder["due_at"] == moved["start"] - timedelta(hours=24) and reminder["status"] == "pending"
    last = (await bookings.history(db, booking["_id"]))[-1]
    assert last["action"] == "reschedule" and last["details"] == {"from_slot": old, "to_slot": new}
    full = await w.centre_slot(days=5, capacity=1, booked=1)
    err = await error_of(bookings.reschedule(db, booking["_id"], full, Actor.resident(FAMILY), POLICY))
    assert err.code == "slot_full"
    current = await db.bookings.find_one({"_id": booking["_id"]})
    assert current["slot_id"] == new and (await db.slots.find_one({"_id": new}))["booked"] == 1
    err = await error_of(bookings.reschedule(db, booking["_id"], new, Actor.resident("family-b"), POLICY))
    assert err.status == 404


async def test_reschedule_of_a_nursing_request_stays_in_the_institution(db):
    w = await world(db)
    patient = await make_patient(db, FAMILY)
    booking, _ = await bookings.create_booking(db, FAMILY, nursing_request(await w.nursing_slot(), patient["_id"]),
                                               POLICY)
    elsewhere = await w.nursing_slot(days=4, institution=OTHER_CLINIC)
    err = await error_of(bookings.reschedule(db, booking["_id"], elsewhere, Actor.resident(FAMILY), POLICY))
    assert err.code == "other_institution"
    later = await w.nursing_slot(days=5, hour=14)
    moved = await bookings.reschedule(db, booking["_id"], later, Actor.resident(FAMILY), POLICY)
    assert moved["cancel_deadline"] == moved["start"] - timedelta(hours=4)
    assert moved["review_deadline"] <= moved["start"] - timedelta(hours=2)
    await bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, POLICY, nurse_id="nurse-lvli")
    err = await error_of(bookings.reschedule(db, booking["_id"], await w.nursing_slot(days=6),
                                             Actor.resident(FAMILY), POLICY))
    assert err.code == "invalid_transition"


async def test_staff_of_another_institution_and_other_families_are_refused(db):
    w = await world(db)
    await make_institution(db, "other-centre", "centre")
    booking, _ = await bookings.create_booking(db, FAMILY, centre_request(await w.centre_slot()), POLICY)
    other_desk = Actor("staff", "x", t.CENTRE_STAFF, "other-centre")
    err = await error_of(bookings.transition(db, booking["_id"], t.CHECKED_IN, other_desk, POLICY))
    assert err.status == 403
    err = await error_of(bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident("family-b"), POLICY))
    assert (err.status, err.code) == (404, "booking_not_found")
    assert (await db.bookings.find_one({"_id": booking["_id"]}))["status"] == "booked"
    admin = Actor("staff", "root", t.ADMIN, None)
    checked_in = await bookings.transition(db, booking["_id"], t.CHECKED_IN, admin, POLICY, now=booking["start"])
    assert checked_in["status"] == "checked_in"
