"""Slots in MongoDB for a rolling horizon, regenerated from the calendar without disturbing bookings.

Regeneration upserts each generated slot by its deterministic ``_id``
(``<institution_id>|<YYYY-MM-DD>|<HH:MM>``) and sets everything EXCEPT ``booked``, which only the
booking code changes (atomic conditional updates, see the booking contract). A stored slot from
today on that the rules no longer produce:
- with ``booked == 0`` becomes ``status: "withdrawn"`` (conditional on booked == 0, so a booking
  taken at the same moment wins and the slot is handled by the next rule);
- with bookings stays ``open`` with ``capacity: 0`` and ``removed_by_rules: true``: its bookings keep
  their slot (staff see them in ``kept_with_bookings`` and contact the families), nobody can take it
  again, and residents no longer see it. Once its bookings are gone the next run withdraws it.
Runs for one institution are serialised by a lease so two regenerations cannot interleave.
The holiday data is read from the database under the lock (``scheduling.holidays``), so a run after an
import of a year uses it; each slot stores ``provisional`` (its day's holiday data is not official yet).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from bot import leases
from bot.db import declare_indexes
from scheduling import holidays as holidays_store
from scheduling import institutions as institutions_store
from scheduling import nurses as nurses_store
from scheduling import overrides as overrides_store
from scheduling.calendar import (
    QUALIFIED_NURSES,
    SHANGHAI,
    WINDOWS,
    CalendarRules,
    HolidayLookup,
    covered,
    generate,
)
from scheduling.holidays import LIBRARY_CALENDAR

log = logging.getLogger(__name__)

COLLECTION = "slots"
OPEN, WITHDRAWN = "open", "withdrawn"
DEFAULT_HORIZON_DAYS = 14
_LOCK_TTL = timedelta(seconds=60)  # a run takes well under a second; a crashed holder's lease lapses after this
_LOCK_WAIT = _LOCK_TTL + timedelta(seconds=15)  # long enough to take over from a crashed holder

declare_indexes(
    COLLECTION,
    IndexModel([("institution_id", ASCENDING), ("date", ASCENDING), ("start", ASCENDING)],
               name="institution_date_start"),
    IndexModel([("institution_id", ASCENDING), ("start", ASCENDING)], name="institution_start"),
)


def today_local(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(SHANGHAI).date()


def slot_view(slot: dict[str, Any]) -> dict[str, Any]:
    """The API form of a slot (both booking engineers use it): times with the +08:00 offset."""
    return {
        "id": slot["_id"],
        "institution_id": slot["institution_id"],
        "date": slot["date"],
        "start": slot["start"].astimezone(SHANGHAI).isoformat(),
        "end": slot["end"].astimezone(SHANGHAI).isoformat(),
        "capacity": slot["capacity"],
        "remaining": max(slot["capacity"] - slot.get("booked", 0), 0),
        "appointment_only": bool(slot.get("appointment_only")),
        "extended": bool(slot.get("extended")),
        "provisional": bool(slot.get("provisional")),
    }


async def get_slot(db: AsyncDatabase, slot_id: str) -> dict[str, Any] | None:
    return await db[COLLECTION].find_one({"_id": slot_id})


def bookable_filter(institution_id: str, now: datetime) -> dict[str, Any]:
    """Slots a resident may see: open, still produced by the rules, not yet started."""
    return {"institution_id": institution_id, "status": OPEN, "removed_by_rules": {"$ne": True},
            "start": {"$gt": now}}


async def find_slots(db: AsyncDatabase, institution_id: str, first: date, last: date, *,
                     now: datetime | None = None, min_minutes: int | None = None) -> list[dict[str, Any]]:
    """Bookable slots from ``first`` to ``last`` (local dates, inclusive), earliest first; with
    ``min_minutes`` only slots long enough for a service of that duration."""
    query = bookable_filter(institution_id, now or datetime.now(UTC))
    query["date"] = {"$gte": first.isoformat(), "$lte": last.isoformat()}
    slots = await db[COLLECTION].find(query).sort("start", ASCENDING).to_list(None)
    if min_minutes:
        slots = [s for s in slots if s["end"] - s["start"] >= timedelta(minutes=min_minutes)]
    return slots


@dataclass
class GenerationReport:
    institution_id: str
    first: date
    last: date
    upserted: int = 0
    withdrawn: int = 0
    kept_with_bookings: list[str] = field(default_factory=list)  # slot ids removed by rules, still booked
    uncovered_years: list[int] = field(default_factory=list)
    provisional_years: list[int] = field(default_factory=list)  # years whose slots are provisional

    def summary(self) -> dict[str, Any]:
        return {"institution_id": self.institution_id, "first": self.first.isoformat(),
                "last": self.last.isoformat(), "slots": self.upserted, "withdrawn": self.withdrawn,
                "kept_with_bookings": self.kept_with_bookings, "uncovered_years": self.uncovered_years,
                "provisional_years": self.provisional_years}


def horizon_days_of(rules: CalendarRules, default_horizon_days: int) -> int:
    return rules.horizon_days or default_horizon_days


async def resolve_capacity(db: AsyncDatabase, institution: dict[str, Any], rules: CalendarRules) -> int:
    if rules.capacity_per_slot == QUALIFIED_NURSES:
        return await nurses_store.count_qualified(db, institution["_id"])
    if rules.capacity_per_slot == WINDOWS:
        return int(institution.get("windows") or 0)
    return int(rules.capacity_per_slot)


async def generate_slots(
    db: AsyncDatabase,
    institution: dict[str, Any] | str,
    today: date | None = None,
    *,
    default_horizon_days: int = DEFAULT_HORIZON_DAYS,
    holidays: HolidayLookup | None = None,
) -> GenerationReport:
    """(Re)generate the institution's slots from ``today`` over its horizon. Idempotent; never
    touches ``booked``. ``holidays``: the lookup to use, by default the holiday calendar stored in the
    database. ``RulesError`` if its stored calendar rules are unusable; ``LookupError`` if the
    institution does not exist."""
    institution_id = institution if isinstance(institution, str) else institution["_id"]
    holder = uuid.uuid4().hex
    await _lock(db, institution_id, holder)
    try:
        # re-read under the lock so the newest rules win
        current = await institutions_store.get_institution(db, institution_id)
        if current is None:
            raise LookupError(f"no institution {institution_id}")
        lookup = holidays if holidays is not None else await holidays_store.load_calendar(db)
        return await _generate_locked(db, current, today or today_local(), default_horizon_days, lookup)
    finally:
        await leases.release(db, _lock_name(institution_id), holder)


async def _generate_locked(db: AsyncDatabase, institution: dict[str, Any], today: date,
                           default_horizon_days: int, holidays: HolidayLookup) -> GenerationReport:
    institution_id = institution["_id"]
    rules = institutions_store.calendar_rules(institution)
    last = today + timedelta(days=horizon_days_of(rules, default_horizon_days) - 1)
    override_docs = await overrides_store.list_overrides(db, institution_id, today, last)
    overrides = {o.date: o for o in map(overrides_store.to_override, override_docs)}
    capacity = await resolve_capacity(db, institution, rules)
    generated = generate(rules, today, last, capacity=capacity, overrides=overrides, holidays=holidays)

    report = GenerationReport(institution_id, today, last, uncovered_years=sorted(generated.uncovered_years),
                              provisional_years=sorted(generated.provisional_years))
    now = datetime.now(UTC)
    operations = []
    for spec in generated.slots:
        operations.append(UpdateOne(
            {"_id": spec.slot_id(institution_id)},
            {"$set": {"institution_id": institution_id, "kind": institution["kind"],
                      "date": spec.date.isoformat(), "start": spec.start.astimezone(UTC),
                      "end": spec.end.astimezone(UTC), "capacity": spec.capacity,
                      "appointment_only": spec.appointment_only, "extended": spec.extended,
                      "provisional": spec.provisional, "status": OPEN, "removed_by_rules": False, "generated_at": now},
             "$setOnInsert": {"booked": 0}},
            upsert=True,
        ))
    if operations:
        await db[COLLECTION].bulk_write(operations, ordered=False)
    report.upserted = len(operations)

    wanted = {spec.slot_id(institution_id) for spec in generated.slots}
    stale = db[COLLECTION].find(
        {"institution_id": institution_id, "date": {"$gte": today.isoformat()}, "status": OPEN,
         "_id": {"$nin": sorted(wanted)}},
        projection={"booked": 1},
    )
    async for slot in stale:
        withdrawn = await db[COLLECTION].update_one(
            {"_id": slot["_id"], "status": OPEN, "booked": 0},
            {"$set": {"status": WITHDRAWN, "removed_by_rules": True, "generated_at": now}})
        if withdrawn.modified_count:
            report.withdrawn += 1
            continue
        kept = await db[COLLECTION].update_one(
            {"_id": slot["_id"], "status": OPEN, "booked": {"$gt": 0}},
            {"$set": {"capacity": 0, "removed_by_rules": True, "generated_at": now}})
        if kept.matched_count:
            report.kept_with_bookings.append(slot["_id"])
    if report.kept_with_bookings:
        log.warning("slots removed by the calendar still have bookings",
                    extra={"institution_id": institution_id, "slots": report.kept_with_bookings})
    if report.uncovered_years:
        log.warning("no holiday data: no slots generated for these years",
                    extra={"institution_id": institution_id, "years": report.uncovered_years})
    return report


def _lock_name(institution_id: str) -> str:
    return f"slots:{institution_id}"


async def _lock(db: AsyncDatabase, institution_id: str, holder: str) -> None:
    deadline = datetime.now(UTC) + _LOCK_WAIT
    while not await leases.acquire(db, _lock_name(institution_id), holder, _LOCK_TTL):
        if datetime.now(UTC) > deadline:
            raise TimeoutError(f"slot generation of {institution_id} is busy")
        await asyncio.sleep(0.05)


# --- coverage of the holiday data -----------------------------------------------------------------

def _years(first: date, last: date) -> list[tuple[int, date]]:
    """Each year touching ``first``..``last`` with its first day inside the range."""
    return [(year, max(first, date(year, 1, 1))) for year in range(first.year, last.year + 1)]


def uncovered_years(first: date, last: date, holidays: HolidayLookup = LIBRARY_CALENDAR) -> list[int]:
    """Years touching ``first``..``last`` without any holiday data (neither official nor provisional)."""
    return [year for year, day in _years(first, last) if not covered(day, holidays)]


def provisional_years(first: date, last: date, holidays: HolidayLookup = LIBRARY_CALENDAR) -> list[int]:
    """Years touching ``first``..``last`` whose holiday data is provisional (no official notice)."""
    return [year for year, day in _years(first, last) if covered(day, holidays) and holidays(day).provisional]


def _official(day: date, holidays: HolidayLookup) -> bool:
    return covered(day, holidays) and not holidays(day).provisional


def covered_until(today: date, holidays: HolidayLookup = LIBRARY_CALENDAR,
                  lookahead_years: int = 5) -> date | None:
    """The last day of the last consecutive year from ``today`` with official holiday data; None if
    today's year has none."""
    if not _official(today, holidays):
        return None
    year = today.year
    while year < today.year + lookahead_years and _official(date(year + 1, 1, 1), holidays):
        year += 1
    return date(year, 12, 31)
