"""Concurrency on the real database: capacity, idempotency, quota and nurse time hold under races.

The races run with the per-slot queue of this process switched off (``UNQUEUED``), so the
transactions really collide and only the database enforces the limits; the capacity race runs
with it on as well.
"""

import asyncio
from collections import Counter
from dataclasses import replace

import pytest

from scheduling import bookings, waitlist
from scheduling import transitions as t
from scheduling.booking_base import Actor, Policy
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE_SERVICE,
    CLINIC,
    NURSING_SERVICE,
    POLICY,
    make_patient,
    visitor,
    world,
)

CLINIC_STAFF = Actor("staff", "clinic-1", t.CLINIC_STAFF, CLINIC)
UNQUEUED = replace(POLICY, queue_per_slot=False)


def request(slot_id: str, key: str = "k", **kw) -> bookings.BookingRequest:
    kw.setdefault("visitor", visitor(key))
    return bookings.BookingRequest(slot_id=slot_id, service_id=CENTRE_SERVICE, idempotency_key=key, **kw)


def outcomes(results) -> Counter:
    return Counter("ok" if not isinstance(r, BaseException) else getattr(r, "code", repr(r)) for r in results)


@pytest.mark.parametrize("policy", [UNQUEUED, POLICY], ids=["database-only", "queued"])
async def test_200_concurrent_creates_on_capacity_5_make_exactly_5_bookings(db, policy):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    results = await asyncio.gather(*(bookings.create_booking(db, f"family-{i}", request(slot_id, f"family-{i}"), policy)
                                     for i in range(200)), return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 5, "slot_full": 195})
    assert await db.bookings.count_documents({}) == 5
    assert await db.bookings.count_documents({"slot_id": slot_id}) == 5
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 5
    assert await db.audit_log.count_documents({"entity": "booking"}) == 5


async def test_same_idempotency_key_20_times_concurrently_makes_one_booking(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    results = await asyncio.gather(*(bookings.create_booking(db, "family-a", request(slot_id, "retry-me"), UNQUEUED)
                                     for _ in range(20)), return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 20})
    assert len({booking["_id"] for booking, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await db.bookings.count_documents({}) == 1
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1
    assert (await db.booking_quotas.find_one({"_id": "family-a"}))["active"] == 1


async def test_one_familys_concurrent_creates_stop_at_its_limit(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=50)
    policy = Policy(max_active_bookings=3, queue_per_slot=False)
    results = await asyncio.gather(*(bookings.create_booking(db, "family-a", request(slot_id, f"k{i}"), policy)
                                     for i in range(20)), return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 3, "too_many_active_bookings": 17})
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 3
    assert (await db.booking_quotas.find_one({"_id": "family-a"}))["active"] == 3


async def test_concurrent_cancels_of_one_booking_release_the_seat_once(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    booking, _ = await bookings.create_booking(db, "family-a", request(slot_id, "a"), UNQUEUED)
    await bookings.create_booking(db, "family-b", request(slot_id, "b"), UNQUEUED)
    desk = Actor("staff", "desk", t.CENTRE_STAFF, "test-centre")
    attempts = [bookings.transition(db, booking["_id"], t.CANCELLED, Actor.resident("family-a"), UNQUEUED)
                for _ in range(10)]
    attempts += [bookings.transition(db, booking["_id"], t.CANCELLED, desk, UNQUEUED, reason="重复")
                 for _ in range(10)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    counts = outcomes(results)
    # cancelling a cancelled booking returns it unchanged: the others see it cancelled (or lost the race)
    assert counts["ok"] >= 1 and sum(counts.values()) == 20
    assert set(counts) <= {"ok", "booking_changed"}
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 1
    assert await db.notifications.count_documents({"kind": "booking_cancelled"}) == 1
    assert await db.audit_log.count_documents({"entity_id": booking["_id"], "to": "cancelled"}) == 1


async def test_concurrent_cancel_and_rebook_keep_counts_exact(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=5)
    holders = [(await bookings.create_booking(db, f"holder-{i}", request(slot_id, f"h{i}"), UNQUEUED))[0]
               for i in range(5)]
    cancels = [bookings.transition(db, b["_id"], t.CANCELLED, Actor.resident(b["openid"]), UNQUEUED) for b in holders]
    rebooks = [bookings.create_booking(db, f"new-{i}", request(slot_id, f"n{i}"), UNQUEUED) for i in range(30)]
    mixed = [item for pair in zip(rebooks[:5], cancels, strict=True) for item in pair] + rebooks[5:]
    results = await asyncio.gather(*mixed, return_exceptions=True)
    assert all(not isinstance(r, BaseException) or getattr(r, "code", "") == "slot_full" for r in results), results
    active = await db.bookings.count_documents({"slot_id": slot_id, "status": "booked"})
    slot = await db.slots.find_one({"_id": slot_id})
    assert slot["booked"] == active <= 5
    assert await db.bookings.count_documents({"slot_id": slot_id, "status": "cancelled"}) == 5


async def test_two_concurrent_confirmations_of_one_nurse_for_overlapping_visits(db):
    w = await world(db)
    nine, ten = await w.nursing_slot(hour=9), await w.nursing_slot(hour=10)
    visits = [(await bookings.create_booking(db, "family-a", bookings.BookingRequest(
        slot_id, NURSING_SERVICE, f"k{slot_id}", patient_id=(await make_patient(db, "family-a"))["_id"],
        assessment=ASSESSMENT), UNQUEUED))[0]
        for slot_id in (nine, ten)]
    results = await asyncio.gather(*(bookings.transition(db, v["_id"], t.CONFIRMED, CLINIC_STAFF, UNQUEUED,
                                                         nurse_id="nurse-lvli") for v in visits),
                                   return_exceptions=True)
    assert outcomes(results) == Counter({"ok": 1, "nurse_busy": 1})
    statuses = sorted([(await db.bookings.find_one({"_id": v["_id"]}))["status"] for v in visits])
    assert statuses == ["confirmed", "requested"]
    owners = {a["booking_id"] async for a in db.nurse_assignments.find({"nurse_id": "nurse-lvli"})}
    assert len(owners) == 1


async def test_concurrent_confirmations_of_one_request_assign_one_nurse(db):
    w = await world(db)
    patient = await make_patient(db, "family-a")
    booking, _ = await bookings.create_booking(db, "family-a", bookings.BookingRequest(
        await w.nursing_slot(), NURSING_SERVICE, "k", patient_id=patient["_id"], assessment=ASSESSMENT), UNQUEUED)
    results = await asyncio.gather(*(bookings.transition(db, booking["_id"], t.CONFIRMED, CLINIC_STAFF, UNQUEUED,
                                                         nurse_id=nurse) for nurse in ("nurse-lvli", "nurse-chen")),
                                   return_exceptions=True)
    assert outcomes(results)["ok"] == 1
    assert len(await db.nurse_assignments.distinct("nurse_id")) == 1
    assert (await db.slots.find_one({"_id": booking["slot_id"]}))["confirmed"] == 1


async def test_freed_seats_under_contention_go_to_waiting_families_only(db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=3)
    holders = [(await bookings.create_booking(db, f"holder-{i}", request(slot_id, f"h{i}"), UNQUEUED))[0]
               for i in range(3)]
    waiting = [await waitlist.join(db, f"waiter-{i}", slot_id, CENTRE_SERVICE) for i in range(3)]
    cancels = [bookings.transition(db, b["_id"], t.CANCELLED, Actor.resident(b["openid"]), UNQUEUED) for b in holders]
    grabs = [bookings.create_booking(db, f"grabber-{i}", request(slot_id, f"g{i}"), UNQUEUED) for i in range(20)]
    results = await asyncio.gather(*cancels, *grabs, return_exceptions=True)
    assert outcomes(results[:3]) == Counter({"ok": 3})
    assert outcomes(results[3:]) == Counter({"slot_full": 20})
    offered = [(await waitlist.get(db, e["openid"], e["_id"]))["status"] for e in waiting]
    assert offered == ["offered"] * 3
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 3
    accepted = await asyncio.gather(*(bookings.create_booking(
        db, e["openid"], request(slot_id, "accept", waitlist_id=e["_id"], visitor=visitor(e["openid"])), UNQUEUED)
        for e in waiting),
        return_exceptions=True)
    assert outcomes(accepted) == Counter({"ok": 3})
    assert (await db.slots.find_one({"_id": slot_id}))["booked"] == 3
