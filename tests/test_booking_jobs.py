"""The booking jobs as the scheduler runs them, on the real app and database."""

from datetime import UTC, datetime, timedelta

from bot.app import jobs
from scheduling import booking_jobs, bookings, waitlist
from scheduling import transitions as t
from scheduling.booking_base import Actor
from tests.booking_factories import (
    ASSESSMENT,
    CENTRE_SERVICE,
    NURSING_SERVICE,
    POLICY,
    VISITOR,
    make_patient,
    world,
)


def test_booking_jobs_are_registered_and_exclusive():
    registered = {job.name: job for job in jobs()}
    for name in ("booking-expire-requests", "booking-waitlist"):
        assert registered[name].exclusive and registered[name].every == timedelta(minutes=1)


async def test_expire_job_expires_overdue_requests_only(client, db):
    w = await world(db)
    patient = await make_patient(db, "fam-a")
    made = [(await bookings.create_booking(db, "fam-a", bookings.BookingRequest(
        await w.nursing_slot(hour=hour), NURSING_SERVICE, f"k{hour}", patient_id=patient["_id"],
        assessment=ASSESSMENT), POLICY))[0] for hour in (9, 14)]
    past = datetime.now(UTC) - timedelta(minutes=1)
    await db.bookings.update_one({"_id": made[0]["_id"]}, {"$set": {"review_deadline": past}})
    await booking_jobs.expire_requests(client.app)
    statuses = [(await db.bookings.find_one({"_id": b["_id"]}))["status"] for b in made]
    assert statuses == ["expired", "requested"]
    assert (await db.slots.find_one({"_id": made[0]["slot_id"]}))["booked"] == 0
    await booking_jobs.expire_requests(client.app)  # a second run changes nothing
    assert await db.audit_log.count_documents({"to": "expired"}) == 1


async def test_waitlist_job_passes_a_lapsed_offer_on(client, db):
    w = await world(db)
    slot_id = await w.centre_slot(capacity=1)
    holder, _ = await bookings.create_booking(db, "holder", bookings.BookingRequest(slot_id, CENTRE_SERVICE, "k",
                                                                                          visitor=VISITOR),
                                              POLICY)
    first = await waitlist.join(db, "fam-a", slot_id, CENTRE_SERVICE)
    second = await waitlist.join(db, "fam-b", slot_id, CENTRE_SERVICE)
    await bookings.transition(db, holder["_id"], t.CANCELLED, Actor.resident("holder"), POLICY)
    await db.waitlist.update_one({"_id": first["_id"]},
                                 {"$set": {"offer_expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
    await booking_jobs.move_waitlist(client.app)
    assert (await waitlist.get(db, "fam-a", first["_id"]))["status"] == "lapsed"
    assert (await waitlist.get(db, "fam-b", second["_id"]))["status"] == "offered"
    assert await db.notifications.count_documents({"kind": "waitlist_offer"}) == 2
