"""Slot storage on the real database: regeneration never touches booked counts, overrides,
capacity from nurses, provisional years, years without holiday data in /readyz and the metric."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from aiohttp import web
from prometheus_client import REGISTRY

from bot.keys import READINESS
from bot.readiness import Readiness
from scheduling import overrides, slots
from scheduling.calendar import DayInfo, DayType, covered
from scheduling.seed import CENTRE_ID, HOSPITAL_ID, seed_booking_data
from scheduling.slot_jobs import Coverage, publish, refresh_all

MONDAY = date(2026, 11, 23)  # winter, an ordinary week (Saturday 28th, Sunday 29th)


async def seeded(mongo_client, db, settings):
    await seed_booking_data(db, 14)


async def test_generation_stores_the_horizon(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    report = await slots.generate_slots(db, CENTRE_ID, MONDAY, default_horizon_days=14)
    assert (report.first, report.last) == (MONDAY, MONDAY + timedelta(days=13))
    assert report.upserted == 10 * 18 + 2 * 6  # ten winter weekdays, two Saturday mornings
    stored = await db.slots.count_documents({"institution_id": CENTRE_ID, "date": {"$gte": "2026-11-23",
                                                                                   "$lte": "2026-12-06"}})
    assert stored == report.upserted
    slot = await slots.get_slot(db, f"{CENTRE_ID}|2026-11-23|17:30")
    assert slot["booked"] == 0 and slot["capacity"] == 4 and slot["extended"] and slot["status"] == "open"
    view = slots.slot_view(slot)
    assert view["start"] == "2026-11-23T17:30:00+08:00" and view["end"] == "2026-11-23T18:00:00+08:00"
    assert view["remaining"] == 4 and view["id"] == f"{CENTRE_ID}|2026-11-23|17:30"


async def test_regeneration_keeps_booked_counts(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    slot_id = f"{CENTRE_ID}|2026-11-24|10:00"
    await db.slots.update_one({"_id": slot_id}, {"$inc": {"booked": 3}})  # as the booking code would
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    assert (await slots.get_slot(db, slot_id))["booked"] == 3

    # fewer staffed windows: capacity drops below the bookings, the bookings stay
    await db.institutions.update_one({"_id": CENTRE_ID}, {"$set": {"windows": 2}})
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    slot = await slots.get_slot(db, slot_id)
    assert (slot["capacity"], slot["booked"], slot["status"]) == (2, 3, "open")
    assert slots.slot_view(slot)["remaining"] == 0


async def test_closing_a_day_withdraws_free_slots_and_keeps_booked_ones(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    booked_id = f"{CENTRE_ID}|2026-11-25|09:00"
    await db.slots.update_one({"_id": booked_id}, {"$inc": {"booked": 1}})
    day = date(2026, 11, 25)
    await overrides.set_override(db, CENTRE_ID, day, {"action": "close", "reason": "系统升级"}, "test")
    report = await slots.generate_slots(db, CENTRE_ID, MONDAY)
    assert report.kept_with_bookings == [booked_id]
    assert report.withdrawn == 17
    kept = await slots.get_slot(db, booked_id)
    assert (kept["status"], kept["capacity"], kept["booked"], kept["removed_by_rules"]) == ("open", 0, 1, True)
    assert await db.slots.count_documents({"date": "2026-11-25", "status": "withdrawn"}) == 17
    now = datetime(2026, 11, 23, tzinfo=UTC)
    visible = await slots.find_slots(db, CENTRE_ID, day, day, now=now)
    assert visible == []

    # lifting the override brings the day back, the booking still counted
    await overrides.delete_override(db, CENTRE_ID, day)
    report = await slots.generate_slots(db, CENTRE_ID, MONDAY)
    assert report.kept_with_bookings == []
    visible = await slots.find_slots(db, CENTRE_ID, day, day, now=now)
    assert len(visible) == 18
    restored = await slots.get_slot(db, booked_id)
    assert (restored["capacity"], restored["booked"], restored["removed_by_rules"]) == (4, 1, False)


async def test_opening_a_sunday_with_appointment_only_slots(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    sunday = date(2026, 11, 29)
    await overrides.set_override(db, CENTRE_ID, sunday, {"action": "open", "open": "09:00", "close": "11:00",
                                                         "capacity": 1, "appointment_only": True,
                                                         "reason": "集中办理"}, "test")
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    found = await db.slots.find({"institution_id": CENTRE_ID, "date": "2026-11-29"}).sort("start").to_list(None)
    assert [s["_id"].rsplit("|", 1)[1] for s in found] == ["09:00", "09:30", "10:00", "10:30"]
    assert all(s["appointment_only"] and s["capacity"] == 1 for s in found)


async def test_horizon_shrinking_withdraws_free_slots_beyond_it(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await slots.generate_slots(db, CENTRE_ID, MONDAY, default_horizon_days=14)
    await slots.generate_slots(db, CENTRE_ID, MONDAY, default_horizon_days=3)
    open_dates = await db.slots.distinct("date", {"institution_id": CENTRE_ID, "status": "open",
                                                  "date": {"$gte": "2026-11-23"}})
    assert sorted(open_dates) == ["2026-11-23", "2026-11-24", "2026-11-25"]


async def test_nursing_capacity_follows_active_qualified_nurses(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    report = await slots.generate_slots(db, HOSPITAL_ID, MONDAY)
    assert report.upserted == 14 * 5  # every day, five 2-hour windows
    slot_id = f"{HOSPITAL_ID}|2026-11-29|08:00"
    assert (await slots.get_slot(db, slot_id))["capacity"] == 3
    await db.nurses.update_one({"_id": "nurse-liujia"}, {"$set": {"active": False}})
    await slots.generate_slots(db, HOSPITAL_ID, MONDAY)
    assert (await slots.get_slot(db, slot_id))["capacity"] == 2


async def test_year_without_holiday_data_gets_no_slots(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)

    def data_until_2026(day: date) -> DayInfo:
        if day.year > 2026:
            raise NotImplementedError
        return DayInfo(DayType.WORKDAY if day.weekday() < 5 else DayType.WEEKEND)

    report = await slots.generate_slots(db, CENTRE_ID, date(2026, 12, 25), default_horizon_days=14,
                                        holidays=data_until_2026)
    assert report.uncovered_years == [2027]
    dates = await db.slots.distinct("date", {"institution_id": CENTRE_ID, "date": {"$gte": "2026-12-25"}})
    assert dates and max(dates) == "2026-12-31"


async def test_concurrent_regenerations_do_not_interfere(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    reports = await asyncio.gather(*(slots.generate_slots(db, CENTRE_ID, MONDAY) for _ in range(4)))
    assert {r.upserted for r in reports} == {192}
    assert await db.slots.count_documents({"institution_id": CENTRE_ID, "status": "open",
                                           "date": {"$gte": "2026-11-23"}}) == 192


async def test_coverage_is_published_in_readiness_and_the_gauge(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)

    def data_until_2026(day: date) -> DayInfo:
        if day.year > 2026:
            raise NotImplementedError
        return DayInfo(DayType.WORKDAY if day.weekday() < 5 else DayType.WEEKEND)

    coverage = await refresh_all(db, 14, date(2026, 12, 25), data_until_2026)
    assert coverage.uncovered_years == [2027] and coverage.provisional_years == []
    assert coverage.covered_until == date(2026, 12, 31)
    app = web.Application()
    app[READINESS] = Readiness()
    publish(app, coverage)
    assert app[READINESS].detail["calendar_uncovered_years"] == [2027]
    assert app[READINESS].detail["calendar_covered_until"] == "2026-12-31"
    assert REGISTRY.get_sample_value("calendar_uncovered_year", {"year": "2027"}) == 1
    publish(app, Coverage([], date(2026, 12, 31)))
    assert REGISTRY.get_sample_value("calendar_uncovered_year", {"year": "2027"}) is None
    assert app[READINESS].detail["calendar_uncovered_years"] == []


async def test_broken_rules_of_one_institution_do_not_stop_the_others(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await db.institutions.update_one({"_id": CENTRE_ID}, {"$set": {"calendar.slot_minutes": 0}})
    coverage = await refresh_all(db, 14, MONDAY)
    assert coverage.invalid_rules == [CENTRE_ID]
    assert coverage.slots == 14 * 5


async def test_readyz_reports_uncovered_years_inside_the_horizon(make_client, db):
    client = await make_client(booking_horizon_days=60)
    body = await (await client.get("/readyz")).json()
    today = slots.today_local()
    expected = sorted({d.year for d in (today + timedelta(days=n) for n in range(60)) if not covered(d)})
    assert body["status"] == "ready"
    assert body["detail"]["calendar_uncovered_years"] == expected
    assert isinstance(body["detail"]["calendar_provisional_years"], list)
    if expected:
        metrics = await (await client.get("/metrics")).text()
        assert f'calendar_uncovered_year{{year="{expected[0]}"}} 1.0' in metrics


async def test_takes_during_regeneration_are_never_lost(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await slots.generate_slots(db, CENTRE_ID, MONDAY)
    slot_id = f"{CENTRE_ID}|2026-11-26|11:00"

    async def take() -> bool:  # the booking code's atomic conditional take
        return await db.slots.find_one_and_update(
            {"_id": slot_id, "status": "open", "$expr": {"$lt": ["$booked", "$capacity"]}},
            {"$inc": {"booked": 1}}) is not None

    results = await asyncio.gather(*(take() for _ in range(6)),
                                   *(slots.generate_slots(db, CENTRE_ID, MONDAY) for _ in range(3)))
    taken = sum(1 for r in results[:6] if r)
    assert taken == 4  # capacity 4
    slot = await slots.get_slot(db, slot_id)
    assert (slot["booked"], slot["capacity"]) == (4, 4)


async def test_a_crashed_generator_lease_is_taken_over(mongo_client, db, settings):
    await seeded(mongo_client, db, settings)
    await db.leases.update_one({"_id": f"slots:{CENTRE_ID}"},
                               {"$set": {"holder": "crashed", "expires_at": datetime(2026, 1, 1, tzinfo=UTC)}},
                               upsert=True)
    report = await slots.generate_slots(db, CENTRE_ID, MONDAY)
    assert report.upserted == 192
