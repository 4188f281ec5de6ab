"""The holiday calendar on the real database: the horizon reaching a provisional year, seeding from
chinesecalendar, replacing a year (slots regenerated, booked counts kept, affected bookings
reported, never cancelled), the daily alarm, the admin API and ``python -m bot calendar import``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import REGISTRY

from bot.accounts import staff
from bot.keys import READINESS
from bot.readiness import Readiness
from scheduling import holidays, slot_jobs, slots
from scheduling.calendar import SHANGHAI
from scheduling.seed import CENTRE_ID, DEMO_STAFF, HOSPITAL_ID, seed_booking_data
from tests.conftest import login
from tests.test_catalogue_api import add_staff, error_code, staff_headers

ROOT = Path(__file__).resolve().parent.parent


def official_2027(**changes) -> holidays.YearCalendar:
    """A plausible official 2027: 春节 2-05..2-12 with make-up Sunday 2-14 (differs from the rules)."""
    data = {"year": 2027, "source": "official", "notice": "测试用通知", "holidays": [
        {"name": "元旦", "first": "2027-01-01", "last": "2027-01-03"},
        {"name": "春节", "first": "2027-02-05", "last": "2027-02-12", "makeup_workdays": ["2027-02-14"]},
        {"name": "清明节", "first": "2027-04-03", "last": "2027-04-05"},
        {"name": "劳动节", "first": "2027-05-01", "last": "2027-05-05", "makeup_workdays": ["2027-04-25"]},
        {"name": "端午节", "first": "2027-06-09", "last": "2027-06-09"},
        {"name": "中秋节", "first": "2027-09-15", "last": "2027-09-15"},
        {"name": "国庆节", "first": "2027-10-01", "last": "2027-10-07", "makeup_workdays": ["2027-09-26"]}],
        **changes}
    return holidays.parse_year(data)


async def insert_booking(db, booking_id: str, institution_id: str, day: date, hh_mm: str, *, kind: str = "centre",
                         status: str = "booked", provisional: bool = True) -> str:
    """A booking as the booking code stores it (only the fields of the contract the report reads),
    with its seat taken on the slot."""
    start = datetime.combine(day, datetime.strptime(hh_mm, "%H:%M").time(), tzinfo=SHANGHAI).astimezone(UTC)
    slot_id = f"{institution_id}|{day.isoformat()}|{hh_mm}"
    await db.bookings.insert_one({
        "_id": booking_id, "kind": kind, "openid": f"family-{booking_id}", "institution_id": institution_id,
        "institution_name": "测试机构", "service_id": "svc", "service_name": "异地就医备案", "slot_id": slot_id,
        "date": day.isoformat(), "start": start, "end": start + timedelta(minutes=30), "status": status,
        "provisional": provisional})
    if status not in ("cancelled",):
        await db.slots.update_one({"_id": slot_id}, {"$inc": {"booked": 1}})
    return slot_id


# --- the horizon reaching a year nobody has entered ---------------------------------------------

async def test_generation_on_2026_12_20_finds_provisional_january_2027_slots(db):
    await seed_booking_data(db, 14)
    await holidays.seed_library(db)
    today = date(2026, 12, 20)
    coverage = await slot_jobs.refresh_all(db, 14, today)
    assert coverage.uncovered_years == [] and coverage.provisional_years == [2027]
    assert coverage.covered_until == date(2026, 12, 31)
    now = datetime(2026, 12, 20, 8, tzinfo=SHANGHAI)
    january = await slots.find_slots(db, HOSPITAL_ID, date(2027, 1, 1), date(2027, 1, 31), now=now)
    # the horizon ends 2027-01-02; the hospital visits on holidays too
    assert {s["date"] for s in january} == {"2027-01-01", "2027-01-02"}
    assert all(slots.slot_view(s)["provisional"] is True for s in january)
    december = await slots.find_slots(db, HOSPITAL_ID, date(2026, 12, 20), date(2026, 12, 31), now=now)
    assert december and not any(slots.slot_view(s)["provisional"] for s in december)
    # the centre closes 元旦 (2027-01-01..03 by rule); with a longer horizon its January weekdays appear
    assert await slots.find_slots(db, CENTRE_ID, date(2027, 1, 1), date(2027, 1, 3), now=now) == []
    await slot_jobs.refresh_all(db, 21, today)
    centre = await slots.find_slots(db, CENTRE_ID, date(2027, 1, 1), date(2027, 1, 31), now=now)
    assert sorted({s["date"] for s in centre}) == ["2027-01-04", "2027-01-05", "2027-01-06", "2027-01-07",
                                                   "2027-01-08", "2027-01-09"]
    assert all(s["provisional"] is True for s in centre)


async def test_seeding_stores_the_library_years_and_never_overwrites_a_stored_year(db):
    seeded = await holidays.seed_library(db)
    assert seeded == list(range(2004, 2027))
    stored = await holidays.get_stored(db, 2026)
    assert stored.holidays == holidays.library_year(2026).holidays and stored.imported_by.startswith("chinesecalendar")
    changed = holidays.parse_year({"year": 2026, "holidays": [{"name": "测试", "first": "2026-12-28",
                                                               "last": "2026-12-28"}]})
    await holidays.store_year(db, changed, "staff:demo-admin")
    assert await holidays.seed_library(db) == []
    assert (await holidays.get_stored(db, 2026)).holidays == changed.holidays
    calendar = await holidays.load_calendar(db)
    assert calendar(date(2026, 12, 28)).holiday_name == "测试"
    assert calendar(date(2026, 10, 1)).type.value == "workday"  # the stored year wins over the library
    assert await db.holiday_year_history.count_documents({"year": 2026}) == 1


# --- replacing a year -----------------------------------------------------------------------------

async def test_replacing_a_year_regenerates_keeps_booked_counts_and_reports_affected_bookings(db):
    await seed_booking_data(db, 14)
    today = date(2027, 2, 1)  # a Monday; the horizon is 2027-02-01..14, provisional
    await slot_jobs.refresh_all(db, 14, today)
    booked_slot = f"{CENTRE_ID}|2027-02-11|09:00"
    assert (await slots.get_slot(db, booked_slot))["provisional"] is True  # a working day by rule
    await insert_booking(db, "b-on-new-holiday", CENTRE_ID, date(2027, 2, 11), "09:00")
    await insert_booking(db, "b-cancelled", CENTRE_ID, date(2027, 2, 12), "10:00", status="cancelled")
    await insert_booking(db, "b-working-day", CENTRE_ID, date(2027, 2, 2), "09:00")
    await insert_booking(db, "b-nursing", HOSPITAL_ID, date(2027, 2, 11), "08:00", kind="nursing",
                         status="requested")  # the hospital visits on holidays: not affected

    report = await slot_jobs.import_year(db, official_2027(), "staff:demo-admin", horizon_days=14, today=today)

    assert [b["booking_id"] for b in report.affected_bookings] == ["b-on-new-holiday"]
    affected = report.affected_bookings[0]
    assert affected["reason"] == "该日为春节假期" and affected["provisional"] is True
    assert affected["start"] == "2027-02-11T09:00:00+08:00" and affected["status"] == "booked"
    # never cancelled, booked count untouched, the seat no longer offered
    assert (await db.bookings.find_one({"_id": "b-on-new-holiday"}))["status"] == "booked"
    kept = await slots.get_slot(db, booked_slot)
    assert (kept["booked"], kept["capacity"], kept["removed_by_rules"], kept["status"]) == (1, 0, True, "open")
    centre = next(r for r in report.coverage.regenerations if r.institution_id == CENTRE_ID)
    assert centre.kept_with_bookings == [booked_slot]
    assert centre.withdrawn == 18 + 18 - 1  # the free slots of 2-11 and 2-12 (Thursday, Friday)
    assert (await slots.get_slot(db, f"{CENTRE_ID}|2027-02-02|09:00"))["booked"] == 1
    # the make-up Sunday opens with weekday hours; nothing in the horizon is provisional any more
    sunday = await db.slots.count_documents({"institution_id": CENTRE_ID, "date": "2027-02-14", "status": "open"})
    assert sunday == 18
    assert await db.slots.count_documents({"date": {"$gte": "2027-02-01"}, "status": "open",
                                           "removed_by_rules": False, "provisional": True}) == 0
    changed = {c["date"]: (c["before"], c["after"]) for c in report.changed_days}
    assert changed["2027-02-11"] == ("上班", "春节放假") and changed["2027-02-14"] == ("周末休息", "上班")
    assert report.previous_source == "provisional" and report.previous_origin == "rules"
    assert report.calendar.origin == "stored" and report.calendar.imported_by == "staff:demo-admin"
    lines = "\n".join(report.lines())
    assert "b-on-new-holiday" in lines and "预约没有被取消" in lines and "该日为春节假期" in lines

    # importing the same year again: still reported (the booking is still on a closed day), history kept
    again = await slot_jobs.import_year(db, official_2027(), "staff:demo-admin", horizon_days=14, today=today)
    assert [b["booking_id"] for b in again.affected_bookings] == ["b-on-new-holiday"]
    assert again.changed_days == [] and again.previous_source == "official"
    assert await db.holiday_year_history.count_documents({"year": 2027}) == 1
    assert (await slots.get_slot(db, booked_slot))["booked"] == 1


async def test_a_day_opened_by_override_keeps_its_booking_out_of_the_report(db):
    from scheduling import overrides

    await seed_booking_data(db, 14)
    today = date(2027, 2, 1)
    await slot_jobs.refresh_all(db, 14, today)
    await insert_booking(db, "b-kept-open", CENTRE_ID, date(2027, 2, 11), "09:00")
    await overrides.set_override(db, CENTRE_ID, date(2027, 2, 11), {
        "action": "open", "open": "09:00", "close": "10:00", "appointment_only": True, "reason": "节前集中办理"}, "t")
    report = await slot_jobs.import_year(db, official_2027(), "t", horizon_days=14, today=today)
    assert report.affected_bookings == []


# --- the alarm ------------------------------------------------------------------------------------

async def test_a_provisional_year_raises_a_daily_alarm_until_it_is_imported(db):
    await seed_booking_data(db, 14)
    # far from the year end nothing is provisional inside the horizon and the lead
    assert (await slot_jobs.refresh_all(db, 14, date(2026, 11, 1))).provisional_years == []
    first = date(2026, 12, 20)
    coverage = await slot_jobs.refresh_all(db, 14, first)
    assert coverage.provisional_years == [2027]
    assert await slot_jobs.raise_alarms(db, coverage, first) is True
    assert await slot_jobs.raise_alarms(db, coverage, first) is False  # the hourly job: still one a day
    assert await slot_jobs.raise_alarms(db, coverage, first + timedelta(days=1)) is True
    alerts = await holidays.recent_alerts(db, holidays.PROVISIONAL_ALERT)
    assert [a["date"] for a in alerts] == ["2026-12-21", "2026-12-20"]
    assert alerts[0]["audience"] == "admin" and alerts[0]["years"] == [2027]
    assert "2027 年的节假日安排尚未导入" in alerts[0]["message"]
    assert "python -m bot calendar import" in alerts[0]["message"]

    app = web.Application()
    app[READINESS] = Readiness()
    slot_jobs.publish(app, coverage)
    assert app[READINESS].detail["calendar_provisional_years"] == [2027]
    assert app[READINESS].detail["calendar_uncovered_years"] == []
    assert REGISTRY.get_sample_value("calendar_provisional_year", {"year": "2027"}) == 1
    assert REGISTRY.get_sample_value("calendar_uncovered_year", {"year": "2027"}) is None

    await slot_jobs.import_year(db, official_2027(), "t", horizon_days=14, today=first + timedelta(days=2))
    coverage = await slot_jobs.refresh_all(db, 14, first + timedelta(days=2))
    assert coverage.provisional_years == [] and coverage.covered_until == date(2027, 12, 31)
    assert await slot_jobs.raise_alarms(db, coverage, first + timedelta(days=2)) is False
    assert await db.staff_alerts.count_documents({}) == 2
    slot_jobs.publish(app, coverage)
    assert REGISTRY.get_sample_value("calendar_provisional_year", {"year": "2027"}) is None


async def test_a_provisional_import_keeps_the_alarm(db):
    await seed_booking_data(db, 14)
    await slot_jobs.import_year(db, official_2027(source="provisional"), "t", horizon_days=14,
                                today=date(2026, 12, 20))
    coverage = await slot_jobs.refresh_all(db, 14, date(2026, 12, 20))
    assert coverage.provisional_years == [2027]
    slot = await slots.get_slot(db, f"{HOSPITAL_ID}|2027-01-02|08:00")
    assert slot["provisional"] is True


# --- the admin API --------------------------------------------------------------------------------

def holidays_path(year: int | str = 2027) -> str:
    return f"/api/v1/staff/calendar/holidays/{year}"


async def test_admin_imports_a_year_over_http(client, db):
    await seed_booking_data(db, 14)
    for username, (role, institution_id, _, nurse_id) in DEMO_STAFF.items():
        await add_staff(db, username, role, institution_id, nurse_id)
    await add_staff(db, "centre-admin", staff.ADMIN, CENTRE_ID)
    body = official_2027().to_data()

    assert (await client.put(holidays_path(), json=body)).status == 401
    assert (await client.put(holidays_path(), json=body, headers=await login(client))).status == 401
    for username in ("demo-centre", "demo-clinic", "demo-nurse", "centre-admin"):
        response = await client.put(holidays_path(), json=body, headers=await staff_headers(client, username))
        assert response.status == 403, username
    admin = await staff_headers(client, "demo-admin")

    bad = {**body, "holidays": [{**body["holidays"][0], "makeup_workdays": ["2027-01-05"]}]}
    response = await client.put(holidays_path(), json=bad, headers=admin)
    message = (await response.json())["error"]["message"]
    assert response.status == 400 and await error_code(response) == "invalid_calendar"
    assert "holidays 第 1 项（元旦）" in message and "2027-01-05（周二）" in message
    overlapping = {**body, "holidays": [body["holidays"][0], {"name": "又一个", "first": "2027-01-03",
                                                               "last": "2027-01-04"}]}
    response = await client.put(holidays_path(), json=overlapping, headers=admin)
    assert "重叠" in (await response.json())["error"]["message"]
    response = await client.put(holidays_path(), json={**body, "holidays": [{"name": "元旦", "first": 20270101,
                                                                             "last": "2027-01-01"}]}, headers=admin)
    assert response.status == 400 and await error_code(response) == "invalid_calendar"
    response = await client.put(holidays_path(2028), json=body, headers=admin)
    assert response.status == 400 and await error_code(response) == "year_mismatch"
    response = await client.put(holidays_path("27"), json=body, headers=admin)
    assert response.status == 400 and await error_code(response) == "invalid_year"
    assert await db.holiday_years.count_documents({"_id": 2027}) == 0

    response = await client.put(holidays_path(), json=body, headers=admin)
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["calendar"]["source"] == "official" and result["calendar"]["imported_by"] == "staff:demo-admin"
    assert result["previous_source"] == "provisional" and result["affected_bookings"] == []
    assert {r["institution_id"] for r in result["regeneration"]} == {CENTRE_ID, HOSPITAL_ID}
    assert any(c["date"] == "2027-02-11" for c in result["changed_days"])

    centre = await staff_headers(client, "demo-centre")  # any staff member may read the calendar
    year = await (await client.get(holidays_path(), headers=centre)).json()
    assert year["origin"] == "stored" and year["holidays"][1]["makeup_workdays"] == ["2027-02-14"]
    assert (await client.get(holidays_path(2101), headers=centre)).status == 400  # beyond any data
    assert (await client.get(holidays_path(), headers=await login(client))).status == 401
    overview = await (await client.get("/api/v1/staff/calendar/holidays", headers=centre)).json()
    statuses = {y["year"]: y for y in overview["years"]}
    assert statuses[2027]["source"] == "official" and statuses[2027]["origin"] == "stored"
    assert 2027 not in overview["provisional_years"]
    ready = await (await client.get("/readyz")).json()
    assert 2027 not in ready["detail"]["calendar_provisional_years"]


# --- the command line -----------------------------------------------------------------------------

def _bot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env=env)


async def test_cli_imports_a_file_and_lists_the_bookings_on_days_now_closed(db, mongo_uri, db_name, tmp_path):
    await seed_booking_data(db, 14)
    # a weekday of next year's March, booked now, that the imported arrangement makes a holiday
    year = slots.today_local().year + 1
    day = date(year, 3, 10)
    while day.weekday() != 2:
        day += timedelta(days=1)
    await insert_booking(db, "b-cli", CENTRE_ID, day, "10:00")
    file = tmp_path / f"holidays-{year}.yaml"
    file.write_text(f"year: {year}\nsource: official\nnotice: 测试通知\nholidays:\n"
                    f"  - name: 测试假\n    first: {day}\n    last: {day}\n    makeup_workdays: []\n",
                    encoding="utf-8")
    env = {**os.environ, "MONGODB_URI": mongo_uri, "MONGODB_DB": db_name, "DATA_DIR": str(tmp_path)}

    checked = await asyncio.to_thread(_bot, "calendar", "import", str(file), "--dry-run", env=env)
    assert checked.returncode == 0, checked.stderr
    assert "检查通过" in checked.stdout and await db.holiday_years.count_documents({"_id": year}) == 0

    result = await asyncio.to_thread(_bot, "calendar", "import", str(file), "--by", "张科长", env=env)
    assert result.returncode == 0, result.stderr
    assert f"已导入 {year} 年节假日安排（正式通知）：测试通知" in result.stdout
    assert "以下 1 个预约落在现已不开放的日期" in result.stdout and "b-cli" in result.stdout
    assert "该日为测试假假期" in result.stdout
    stored = await db.holiday_years.find_one({"_id": year})
    assert stored["imported_by"] == "张科长" and stored["source"] == "official"
    assert (await db.bookings.find_one({"_id": "b-cli"}))["status"] == "booked"

    as_json = await asyncio.to_thread(_bot, "calendar", "import", str(file), "--json", env=env)
    report = json.loads(as_json.stdout)
    assert [b["booking_id"] for b in report["affected_bookings"]] == ["b-cli"]
    assert report["calendar"]["imported_by"].startswith("cli:")

    file.write_text(file.read_text(encoding="utf-8").replace("makeup_workdays: []", f"makeup_workdays: [{day}]"),
                    encoding="utf-8")
    refused = await asyncio.to_thread(_bot, "calendar", "import", str(file), env=env)
    assert refused.returncode == 1
    assert "第 8 行" in refused.stderr and "holidays 第 1 项（测试假）" in refused.stderr
