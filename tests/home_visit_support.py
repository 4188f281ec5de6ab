"""A confirmed nursing visit with its nurse's staff account, for the home-visit tests (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.accounts.staff import StaffMember
from scheduling import bookings
from scheduling import transitions as t
from scheduling.booking_base import Actor
from tests.booking_factories import ASSESSMENT, CLINIC, NURSING_SERVICE, POLICY, make_patient, world

FAMILY = "family-hv"
# the patient's home in 婺城区, Jinhua (GCJ-02, as wx.chooseLocation gives it)
HOME = {"latitude": 29.0790, "longitude": 119.6470}
NURSE = StaffMember("lvli", "nurse", CLINIC, "吕丽", nurse_id="nurse-lvli")
OTHER_NURSE = StaffMember("chen", "nurse", CLINIC, "陈静", nurse_id="nurse-chen")
DESK = StaffMember("desk", "clinic_staff", CLINIC, "值班护士长")
CLINIC_ACTOR = Actor("staff", "desk", t.CLINIC_STAFF, CLINIC)


@dataclass
class Visit:
    booking: dict[str, Any]
    patient: dict[str, Any]

    @property
    def id(self) -> str:
        return self.booking["_id"]


async def confirmed_visit(db, *, location: dict[str, float] | None = HOME, status: str = t.ON_THE_WAY,
                          key: str = "hv-1", days: int = 3, consent_version: int | None = None) -> Visit:
    w = await world(db)
    address = {"district": "婺城区", "street": "城东街道", "detail": "八一北街 100 号"}
    if location is not None:
        address["location"] = location
    patient = await make_patient(db, FAMILY, address=address)
    slot_id = await w.nursing_slot(days=days)
    booking, _ = await bookings.create_booking(db, FAMILY, bookings.BookingRequest(
        slot_id=slot_id, service_id=NURSING_SERVICE, idempotency_key=key, patient_id=patient["_id"],
        assessment=ASSESSMENT, consent_version=consent_version), POLICY)
    await time_comes(db, booking)  # booked days ahead, the visit's time has now come
    path = [t.CONFIRMED, t.ON_THE_WAY, t.IN_SERVICE, t.COMPLETED]
    for target in path[: path.index(status) + 1] if status in path else []:
        booking = await bookings.transition(db, booking["_id"], target, CLINIC_ACTOR, POLICY,
                                            nurse_id="nurse-lvli" if target == t.CONFIRMED else None)
    return Visit(booking, patient)


async def time_comes(db, booking: dict[str, Any], minutes_ago: int = 5) -> None:
    """Let the visit's time come: move its start to just now (the trip, arrival and completion respect time)."""
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    end = start + (booking["end"] - booking["start"] if "end" in booking else timedelta(minutes=60))
    await db.bookings.update_one({"_id": booking["_id"]}, {"$set": {"start": start, "end": end}})
    booking.update(start=start, end=end)


async def arrived_and_verified(db, visit: Visit) -> None:
    """The nurse's arrival at the door and a matching identity check (what a record needs)."""
    from scheduling import visits

    await visits.arrive(db, NURSE, visit.id, HOME, radius_m=300)
    await visits.check_identity(db, NURSE, visit.id, visits.NAME_AGE, name="王秀英", age=82)
