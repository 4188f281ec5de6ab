"""Waitlist on the real database: a freed seat is held for the first family, accepted or passed on."""

from datetime import timedelta

import pytest

from bot.errors import ApiError
from scheduling import bookings, waitlist
from scheduling import transitions as t
from scheduling.booking_base import Actor
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE_SERVICE,
    NURSING_SERVICE,
    POLICY,
    make_patient,
    visitor,
    world,
)


def request(slot_id: str, key: str, **kw) -> bookings.BookingRequest:
    kw.setdefault("visitor", visitor(key))
    return bookings.BookingRequest(slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=key, **kw)


async def booked(db, slot_id: str) -> int:
    return (await db.slots.find_one({"_id": slot_id}))["booked"]


async def full_slot(db, w, capacity: int = 1):
    slot_id = await w.centre_slot(capacity=capacity)
    holders = []
    for i in range(capacity):
        booking, _ = await bookings.create_booking(db, f"holder-{i}", request(slot_id, f"k{i}"), POLICY)
        holders.append(booking)
    return slot_id, holders


async def test_join_only_a_full_slot_and_only_once(db):
    w = await world(db)
    free = await w.centre_slot(hour=10)
    with pytest.raises(ApiError) as caught:
        await waitlist.join(db, "fam-a", free, CENTRE_SERVICE)
    assert caught.value.code == "slot_available"
    slot_id, _ = await full_slot(db, w)
    entry = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    assert entry["status"] == "waiting" and await waitlist.position(db, entry) == 1
    with pytest.raises(ApiError) as caught:
        await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    assert caught.value.code == "already_waiting"
    second = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    assert await waitlist.position(db, second) == 2


async def test_cancel_holds_the_seat_for_the_first_family_who_accepts(db):
    w = await world(db)
    slot_id, (holder,) = await full_slot(db, w)
    first = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    second = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    await bookings.transition(db, holder["_id"], t.CANCELLED, Actor.resident("holder-0"), POLICY)
    assert await booked(db, slot_id) == 1  # held, never free for a third family
    with pytest.raises(ApiError) as caught:
        await bookings.create_booking(db, "fam-c", request(slot_id, "c"), POLICY)
    assert caught.value.code == "slot_full"
    offered = await waitlist.get(db, "fam-a", first["_id"])
    assert offered["status"] == "offered"
    assert offered["offer_expires_at"] - offered["offered_at"] == timedelta(minutes=30)
    note = await db.notifications.find_one({"kind": "waitlist_offer"})
    assert note["openid"] == "fam-a" and note["payload"]["waitlist_id"] == first["_id"]
    # the second family cannot use the first family's offer
    with pytest.raises(ApiError) as caught:
        await bookings.create_booking(db, "fam-b", request(slot_id, "b", waitlist_id=first["_id"]), POLICY)
    assert caught.value.code == "offer_not_available"
    booking, created = await bookings.create_booking(
        db, "fam-a", request(slot_id, f"waitlist:{first['_id']}", waitlist_id=first["_id"]), POLICY)
    assert created and booking["status"] == "booked"
    assert await booked(db, slot_id) == 1
    accepted = await waitlist.get(db, "fam-a", first["_id"])
    assert accepted["status"] == "accepted" and accepted["booking_id"] == booking["_id"]
    assert (await waitlist.get(db, "fam-b", second["_id"]))["status"] == "waiting"


async def test_lapsed_offer_passes_to_the_next_family_then_back_to_everyone(db):
    w = await world(db)
    slot_id, (holder,) = await full_slot(db, w)
    first = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    second = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    await bookings.transition(db, holder["_id"], t.CANCELLED, Actor.resident("holder-0"), POLICY)
    offer = await waitlist.get(db, "fam-a", first["_id"])
    assert await waitlist.expire_offers(db, POLICY) == 0  # not yet
    later = offer["offer_expires_at"]
    assert await waitlist.expire_offers(db, POLICY, now=later) == 1
    assert (await waitlist.get(db, "fam-a", first["_id"]))["status"] == "lapsed"
    passed = await waitlist.get(db, "fam-b", second["_id"])
    assert passed["status"] == "offered" and await booked(db, slot_id) == 1
    with pytest.raises(ApiError) as caught:  # too late for the first family
        await bookings.create_booking(db, "fam-a", request(slot_id, "a", waitlist_id=first["_id"]), POLICY,
                                      now=later)
    assert caught.value.code == "offer_not_available"
    # nobody else waits: the lapsed second offer gives the seat back to everyone
    assert await waitlist.expire_offers(db, POLICY, now=passed["offer_expires_at"]) == 1
    assert await booked(db, slot_id) == 0
    audit = [r["action"] async for r in db.audit_log.find({"entity": "waitlist"}).sort("at", 1)]
    assert audit.count("offer") == 2 and audit.count("lapse") == 2


async def test_leaving_with_an_offer_passes_the_seat_on(db):
    w = await world(db)
    slot_id, (holder,) = await full_slot(db, w)
    first = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    second = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    await bookings.transition(db, holder["_id"], t.CANCELLED, Actor.resident("holder-0"), POLICY)
    await waitlist.leave(db, "fam-a", first["_id"], POLICY)
    assert (await waitlist.get(db, "fam-b", second["_id"]))["status"] == "offered"
    assert await booked(db, slot_id) == 1
    with pytest.raises(ApiError) as caught:
        await waitlist.leave(db, "fam-x", second["_id"], POLICY)
    assert caught.value.status == 404


async def test_capacity_increase_is_offered_by_the_job(db):
    w = await world(db)
    slot_id, _ = await full_slot(db, w, capacity=2)
    a = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    b = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    c = await waitlist.join(db, "fam-c", slot_id, CENTRE_SERVICE)
    await db.slots.update_one({"_id": slot_id}, {"$set": {"capacity": 4}})  # staff added windows
    assert await waitlist.offer_free_seats(db, POLICY) == 2
    statuses = [(await waitlist.get(db, f, e["_id"]))["status"] for f, e in (("fam-a", a), ("fam-b", b),
                                                                             ("fam-c", c))]
    assert statuses == ["offered", "offered", "waiting"]
    assert await booked(db, slot_id) == 4


async def test_reduced_capacity_is_not_offered(db):
    w = await world(db)
    slot_id, holders = await full_slot(db, w, capacity=2)
    a = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    await db.slots.update_one({"_id": slot_id}, {"$set": {"capacity": 1}})
    await bookings.transition(db, holders[0]["_id"], t.CANCELLED, Actor.resident("holder-0"), POLICY)
    assert (await waitlist.get(db, "fam-a", a["_id"]))["status"] == "waiting"
    assert await booked(db, slot_id) == 1


async def test_nursing_offer_ends_before_the_review_lead_and_needs_the_request_details(db):
    w = await world(db)
    slot_id = await w.nursing_slot(capacity=1)
    patient = await make_patient(db, "holder")
    holder, _ = await bookings.create_booking(db, "holder", bookings.BookingRequest(
        slot_id, NURSING_SERVICE, "h", patient_id=patient["_id"], assessment=ASSESSMENT), POLICY)
    entry = await waitlist.join(db, "fam-a", slot_id, NURSING_SERVICE)
    assert entry["offer_until"] == entry["start"] - timedelta(hours=2)
    await bookings.transition(db, holder["_id"], t.REJECTED, Actor("staff", "s", t.CLINIC_STAFF, "test-clinic"),
                              POLICY, reason="重复申请")
    assert (await waitlist.get(db, "fam-a", entry["_id"]))["status"] == "offered"
    mine = await make_patient(db, "fam-a")
    booking, _ = await bookings.create_booking(db, "fam-a", bookings.BookingRequest(
        slot_id, NURSING_SERVICE, "w", patient_id=mine["_id"], assessment=ASSESSMENT, waitlist_id=entry["_id"]),
        POLICY)
    assert booking["status"] == "requested" and await booked(db, slot_id) == 1


async def test_waiting_entries_expire_when_the_slot_can_no_longer_be_offered(db):
    w = await world(db)
    slot_id, _ = await full_slot(db, w)
    entry = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    await waitlist.offer_free_seats(db, POLICY, now=entry["start"])
    assert (await waitlist.get(db, "fam-a", entry["_id"]))["status"] == "expired"
    # and nobody can join the waitlist of a slot that has started
    with pytest.raises(ApiError):
        await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE, now=entry["start"])
