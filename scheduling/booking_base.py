"""What bookings, the waitlist and the booking jobs share: collection names, the booking policy
from settings, the actor of a change, local-time formatting, the audit record and the payload of
the family's notifications."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from bot.accounts.staff import StaffMember
from bot.config import Settings
from bot.db import declare_indexes
from bot.errors import ApiError
from scheduling import catalogue, institutions, nurses, slots
from scheduling import transitions as t
from scheduling.calendar import SHANGHAI
from scheduling.catalogue import offered_by

BOOKINGS, AUDIT = "bookings", "audit_log"
# the collections of the modules that own them
SLOTS, SERVICES, INSTITUTIONS, NURSES = (
    slots.COLLECTION, catalogue.COLLECTION, institutions.COLLECTION, nurses.COLLECTION)

# A nursing request must leave the institution time to review it: its review deadline is at the
# latest this long before the visit, and waitlist offers for nursing slots end by then too.
REVIEW_LEAD = timedelta(hours=2)
DEFAULT_REVIEW_HOURS = 12
DEFAULT_CANCEL_HOURS = 4


@dataclass(frozen=True)
class InstitutionRules:
    """The time and conduct rules an institution may set in its document (defaults below).

    - check-in (centre): from ``check_in_before_minutes`` before the slot's start to
      ``check_in_after_end_minutes`` after its end;
    - a nurse starts the trip at the earliest ``trip_lead_minutes`` before the visit; the service is
      completed at the earliest ``complete_after_start_minutes`` after the visit's start;
    - ``no_show_limit`` no-shows within ``no_show_window_days`` suspend the family's self-service
      booking at the institution for ``no_show_suspend_days`` (0 as limit: no suspension).
    """

    check_in_before_minutes: int = 30
    check_in_after_end_minutes: int = 0
    trip_lead_minutes: int = 120
    complete_after_start_minutes: int = 0
    no_show_limit: int = 3
    no_show_window_days: int = 90
    no_show_suspend_days: int = 30

    @classmethod
    def of(cls, institution: dict[str, Any] | None) -> InstitutionRules:
        configured = (institution or {}).get("booking_rules") or {}
        values = {name: int(configured[name]) for name in cls.__dataclass_fields__
                  if isinstance(configured.get(name), int) and not isinstance(configured.get(name), bool)
                  and configured[name] >= 0}
        return cls(**values)

    def check_in_window(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        return (start - timedelta(minutes=self.check_in_before_minutes),
                end + timedelta(minutes=self.check_in_after_end_minutes))

    def trip_from(self, start: datetime) -> datetime:
        return start - timedelta(minutes=self.trip_lead_minutes)

    def complete_from(self, start: datetime) -> datetime:
        return start + timedelta(minutes=self.complete_after_start_minutes)

declare_indexes(AUDIT, IndexModel([("entity", ASCENDING), ("entity_id", ASCENDING), ("at", ASCENDING)],
                                  name="entity_at"))


@dataclass(frozen=True)
class Policy:
    max_active_bookings: int = 5
    waitlist_offer_minutes: int = 30
    # Queue this instance's own bookings of one slot instead of letting their transactions collide
    # (see ``SlotQueue``); the database enforces capacity either way.
    queue_per_slot: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(max_active_bookings=settings.max_active_bookings,
                   waitlist_offer_minutes=settings.waitlist_offer_minutes)

    @property
    def offer_window(self) -> timedelta:
        return timedelta(minutes=self.waitlist_offer_minutes)


@dataclass(frozen=True)
class Actor:
    """Who makes a change: ``role`` is the transition-table actor name."""

    kind: str  # resident | staff | system
    id: str
    role: str
    institution_id: str | None = None
    nurse_id: str | None = None

    @classmethod
    def resident(cls, openid: str) -> Actor:
        return cls("resident", openid, t.RESIDENT)

    @classmethod
    def staff(cls, member: StaffMember) -> Actor:
        return cls("staff", member.username, member.role, member.institution_id, member.nurse_id)

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls("system", job, t.SYSTEM)

    def may_act_for(self, institution_id: str) -> bool:
        return self.kind == "system" or (self.kind == "staff" and self.institution_id in (None, institution_id))

    def record(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "role": self.role}


class SlotQueue:
    """One asyncio lock per slot id, for the bookings of this process only, dropped when idle.

    Transactions that take a seat of the same slot write the same document; under optimistic
    concurrency all but one fail with a write conflict and retry after a growing back-off, so a
    popular slot would spend its time sleeping. Queuing this instance's requests per slot turns
    that into one transaction after another. It is an optimisation only: other instances still
    collide, and the conditional update in the transaction is what enforces capacity.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def turn(self, slot_id: str, enabled: bool = True) -> AsyncIterator[None]:
        if not enabled:
            yield
            return
        lock, users = self._locks.get(slot_id, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[slot_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[slot_id]
            if users == 1:
                del self._locks[slot_id]
            else:
                self._locks[slot_id] = (lock, users - 1)


SLOT_QUEUE = SlotQueue()


def local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


def local_text(moment: datetime) -> str:
    """2026-11-25 09:30 in Asia/Shanghai, how people read a visit time."""
    return local(moment).strftime("%Y-%m-%d %H:%M")


def api_error(exc: t.TransitionError) -> ApiError:
    status = {"forbidden": 403, "invalid": 400}.get(exc.kind, 409)
    return ApiError(status, exc.code, exc.message)


async def audit(
    db: AsyncDatabase, session: AsyncClientSession, *, entity: str, entity_id: str, actor: Actor,
    action: str, source: str | None, target: str | None, at: datetime, reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """One audit record, always inside the transaction of the change it records."""
    await db[AUDIT].insert_one({
        "entity": entity, "entity_id": entity_id, "at": at, "actor": actor.record(), "action": action,
        "from": source, "to": target, "reason": reason, "details": details or {},
    }, session=session)


def notification_payload(booking: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What a message about a booking needs; no phone or ID numbers (messages leave our systems)."""
    payload = {
        "booking_id": booking["_id"], "booking_kind": booking["kind"],
        "service_name": booking.get("service_name", ""), "institution_name": booking.get("institution_name", ""),
        "start_local": local_text(booking["start"]), "status": booking["status"],
        "status_label": t.STATUS_LABELS.get(booking["status"], booking["status"]),
    }
    if booking.get("nurse"):
        payload["nurse_name"] = booking["nurse"].get("name", "")
    if booking.get("end"):
        payload["end_local"] = local_text(booking["end"])
    if booking.get("code"):
        payload["code"] = booking["code"]
    if booking.get("institution_phone"):
        payload["institution_phone"] = booking["institution_phone"]
    if booking.get("provisional"):
        payload["provisional"] = True
    payload.update({k: v for k, v in extra.items() if v is not None})
    return payload


SLOT_NOT_FOUND = ApiError(404, "slot_not_found", "找不到该时段或该时段已停止预约")
SLOT_FULL = ApiError(409, "slot_full", "该时段已约满")
SLOT_STARTED = ApiError(409, "slot_started", "该时段已开始或已结束，请选择其他时段")
SERVICE_NOT_OFFERED = ApiError(400, "service_not_offered", "该机构在此时段不提供这项服务")


async def load_bookable(
    db: AsyncDatabase, slot_id: str, service_id: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The slot, service and institution of a booking request, after checking they fit together."""
    slot = await db[SLOTS].find_one({"_id": slot_id}) if isinstance(slot_id, str) else None
    if slot is None or slot.get("status") != "open" or slot.get("removed_by_rules"):
        raise SLOT_NOT_FOUND
    institution = await db[INSTITUTIONS].find_one({"_id": slot["institution_id"]})
    if institution is None:
        raise SLOT_NOT_FOUND
    service = await db[SERVICES].find_one({"_id": service_id}) if isinstance(service_id, str) else None
    kind = institution.get("kind")
    if (service is None or not offered_by(service, institution["_id"]) or service.get("kind") != kind
            or slot.get("kind", kind) != kind):
        raise SERVICE_NOT_OFFERED
    if slot["start"] <= now:
        raise SLOT_STARTED
    return slot, service, institution


def offer_until(slot: dict[str, Any]) -> datetime:
    """The last moment a waitlist offer on this slot may run (nursing requests need review time)."""
    return slot["start"] - (REVIEW_LEAD if slot.get("kind") == t.NURSING else timedelta(0))


# Some MongoDB wire-protocol servers (the embedded SecantusDB among them) scan the whole collection
# for findAndModify and for filters with $expr or $or, while a plain update by _id uses the index.
# So the hot paths read the document, then update it with the condition spelled out on stored
# values: still one atomic, database-enforced conditional write, never check-then-insert.

async def take(db: AsyncDatabase, session: AsyncClientSession, slot_id: str, counter: str = "booked",
               seen: dict[str, Any] | None = None) -> bool:
    """Atomically add one to the slot's ``counter`` while it is below the slot's capacity: the
    update matches only if capacity is what we read and the counter is still below it. ``seen``
    (the slot as read a moment ago) saves the first read; a stale one only costs a retry."""
    for attempt in range(5):
        slot = seen if attempt == 0 and seen is not None else await db[SLOTS].find_one(
            {"_id": slot_id}, {"capacity": 1, "status": 1, counter: 1}, session=session)
        if slot is None or slot.get("status") != "open":
            return False
        capacity, used = int(slot.get("capacity") or 0), slot.get(counter)
        if (used or 0) >= capacity:
            if attempt == 0 and seen is not None:
                continue  # the earlier read may be stale: decide on a fresh one
            return False
        condition = {"$lt": capacity} if used is not None else {"$exists": False}
        result = await db[SLOTS].update_one(
            {"_id": slot_id, "status": "open", "capacity": capacity, counter: condition},
            {"$inc": {counter: 1}}, session=session)
        if result.modified_count == 1:
            return True
        # capacity or status changed between the read and the write: look again
    return False


async def update_and_get(
    db: AsyncDatabase, collection: str, condition: dict[str, Any], update: dict[str, Any],
    session: AsyncClientSession | None = None,
) -> dict[str, Any] | None:
    """A conditional update of one document by ``_id``; the document after it, or None if the
    condition did not match (inside a transaction the read sees the transaction's own write)."""
    result = await db[collection].update_one(condition, update, session=session)
    if result.matched_count != 1:
        return None
    return await db[collection].find_one({"_id": condition["_id"]}, session=session)
